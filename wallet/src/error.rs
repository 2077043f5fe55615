//! One error type for every command: a kind that decides the exit code, and one line of text that says what
//! happened and what to do. Messages never carry secrets (no key bytes, no passwords).

use std::fmt;

/// Process exit codes. Stable: scripts rely on them.
///
/// | code | meaning |
/// |---|---|
/// | 0 | success |
/// | 1 | generic failure (local I/O, unexpected answer from the node) |
/// | 2 | usage: bad arguments, mistyped address (checksum), malformed input file |
/// | 3 | node unreachable (connection refused, no answer in time) |
/// | 4 | transaction refused: insufficient funds (checked locally) or rejected/evicted by the node |
/// | 5 | verification failed (`wallet verify`) |
/// | 6 | key file: missing, unreadable, malformed, or wrong password |
/// | 7 | the node answered with an error (not found, bad request, internal error), or misbehaved: no complete answer within `--timeout`, an answer larger than any legitimate one |
/// | 8 | timed out waiting for a commit: the transaction is still pending |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Generic,
    Usage,
    Unreachable,
    Rejected,
    VerificationFailed,
    Key,
    NodeError,
    WaitTimeout,
}

impl ErrorKind {
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Generic => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Unreachable => 3,
            ErrorKind::Rejected => 4,
            ErrorKind::VerificationFailed => 5,
            ErrorKind::Key => 6,
            ErrorKind::NodeError => 7,
            ErrorKind::WaitTimeout => 8,
        }
    }

    /// Short stable name, used as `error.kind` in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Generic => "generic",
            ErrorKind::Usage => "usage",
            ErrorKind::Unreachable => "node_unreachable",
            ErrorKind::Rejected => "rejected",
            ErrorKind::VerificationFailed => "verification_failed",
            ErrorKind::Key => "key",
            ErrorKind::NodeError => "node_error",
            ErrorKind::WaitTimeout => "wait_timeout",
        }
    }
}

/// Exit-code table for `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  generic failure (local I/O, unexpected answer from the node)
  2  usage: bad arguments, mistyped address (checksum), malformed input file
  3  node unreachable (connection refused, no answer in time)
  4  transaction refused: insufficient funds (checked locally) or rejected/evicted by the node
  5  verification failed (wallet verify)
  6  key file missing, unreadable or malformed, or wrong password
  7  the node answered with an error (not found, bad request, internal error), or misbehaved
     (no complete answer within --timeout, an answer larger than any legitimate one)
  8  timed out waiting for a commit (the transaction is still pending)";

/// A failure: what kind (the exit code) and one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletError {
    pub kind: ErrorKind,
    pub message: String,
    /// The node's error code, when the node reported one.
    pub node_code: Option<String>,
    /// The node's own message for that code, unwrapped (one line, bounded).
    pub node_message: Option<String>,
    /// The HTTP status of the node's error answer.
    pub node_status: Option<u16>,
}

impl WalletError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> WalletError {
        WalletError { kind, message: one_line(&message.into()), node_code: None, node_message: None, node_status: None }
    }

    pub fn with_node_code(mut self, code: impl Into<String>) -> WalletError {
        self.node_code = Some(one_line(&code.into()));
        self
    }

    pub fn with_node_reply(mut self, status: u16, message: &str) -> WalletError {
        self.node_status = Some(status);
        self.node_message = Some(one_line(message));
        self
    }

    pub fn usage(message: impl Into<String>) -> WalletError {
        WalletError::new(ErrorKind::Usage, message)
    }

    pub fn key(message: impl Into<String>) -> WalletError {
        WalletError::new(ErrorKind::Key, message)
    }

    pub fn generic(message: impl Into<String>) -> WalletError {
        WalletError::new(ErrorKind::Generic, message)
    }
}

impl fmt::Display for WalletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WalletError {}

/// Collapse whitespace runs (including newlines) so an error is always exactly one line, and cap its
/// length so a hostile node cannot flood the terminal.
pub fn one_line(text: &str) -> String {
    const MESSAGE_CHARS_MAX: usize = 600;
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = joined.chars().filter(|c| !c.is_control()).take(MESSAGE_CHARS_MAX).collect();
    if joined.chars().count() > MESSAGE_CHARS_MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_bounded() {
        assert_eq!(one_line("a\n  b\tc\r\n"), "a b c");
        assert!(one_line(&"x ".repeat(5000)).chars().count() <= 601);
        assert_eq!(one_line("bell\u{7}!"), "bell!");
    }
}

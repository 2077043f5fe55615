//! Files and passwords: bounded reads, private creation, key loading.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use ledger_core::Keypair;
use ledger_core::keyfile::KEY_FILE_BYTES_MAX;
use zeroize::Zeroizing;

use crate::error::{ErrorKind, WalletError};
use crate::keystore::{self, KeyFile, KeystoreError};

/// Environment variable holding the keystore password (for scripts and tests).
pub const PASSWORD_ENV: &str = "WALLET_PASSWORD";
/// Largest password file read.
const PASSWORD_FILE_BYTES_MAX: usize = 4096;

/// Where the password comes from, in order of preference: `--password-file`, `WALLET_PASSWORD`, a hidden
/// prompt on the terminal.
#[derive(Clone, Debug, Default)]
pub struct PasswordSource<'a> {
    pub file: Option<&'a Path>,
}

impl PasswordSource<'_> {
    /// The password to unlock an existing keystore (asked once).
    pub fn unlock(&self, key_path: &Path) -> Result<Zeroizing<String>, WalletError> {
        if let Some(p) = self.preset()? {
            return Ok(p);
        }
        prompt(&format!("Password for {}: ", key_path.display()))
    }

    /// The password for a new keystore (asked twice when prompted).
    pub fn new_password(&self) -> Result<Zeroizing<String>, WalletError> {
        if let Some(p) = self.preset()? {
            return Ok(p);
        }
        let first = prompt("New keystore password: ")?;
        let second = prompt("Repeat the password: ")?;
        if *first != *second {
            return Err(WalletError::usage("the two passwords do not match; run keygen again"));
        }
        Ok(first)
    }

    fn preset(&self) -> Result<Option<Zeroizing<String>>, WalletError> {
        if let Some(path) = self.file {
            let bytes = read_bounded(path, PASSWORD_FILE_BYTES_MAX)
                .map_err(|e| WalletError::key(format!("cannot read password file {}: {e}", path.display())))?;
            let text = Zeroizing::new(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| WalletError::key(format!("password file {} is not UTF-8 text", path.display())))?,
            );
            // One trailing newline is the file's line ending, not part of the password.
            let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            return Ok(Some(Zeroizing::new(trimmed.to_string())));
        }
        match std::env::var(PASSWORD_ENV) {
            Ok(p) => Ok(Some(Zeroizing::new(p))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(WalletError::usage(format!("{PASSWORD_ENV} is not valid UTF-8")))
            }
        }
    }
}

fn prompt(text: &str) -> Result<Zeroizing<String>, WalletError> {
    rpassword::prompt_password(text).map(Zeroizing::new).map_err(|_| {
        WalletError::usage(format!(
            "no password given and no terminal to ask on: set {PASSWORD_ENV} or pass --password-file FILE"
        ))
    })
}

/// Read at most `max` bytes of `path`; a longer file is an error, not truncated.
pub fn read_bounded(path: &Path, max: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let file = File::open(path)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(io::Error::other(format!("file is larger than the limit of {max} bytes")));
    }
    Ok(buf)
}

/// Read a text file of at most `max` bytes, with errors phrased for `what` (e.g. "genesis file").
pub fn read_text(path: &Path, max: usize, what: &str, kind: ErrorKind) -> Result<Zeroizing<String>, WalletError> {
    let bytes = read_bounded(path, max).map_err(|e| io_error(kind, what, path, &e))?;
    String::from_utf8(bytes.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| WalletError::new(kind, format!("{what} {} is not UTF-8 text", path.display())))
}

/// A one-line message for an I/O failure on `path`, with what to do for the common cases.
pub fn io_error(kind: ErrorKind, what: &str, path: &Path, e: &io::Error) -> WalletError {
    let p = path.display();
    let message = match e.kind() {
        io::ErrorKind::NotFound => format!("{what} {p} does not exist; check the path"),
        io::ErrorKind::PermissionDenied => format!("cannot read {what} {p}: permission denied"),
        _ => format!("cannot read {what} {p}: {e}"),
    };
    WalletError::new(kind, message)
}

/// Read and, if encrypted, decrypt the key file at `path`.
pub fn load_key(path: &Path, password: &PasswordSource<'_>) -> Result<Keypair, WalletError> {
    match open_key_file(path)? {
        KeyFile::Plaintext(key) => Ok(key),
        KeyFile::Encrypted(enc) => {
            let pw = password.unlock(path)?;
            enc.decrypt(pw.as_bytes()).map_err(|e| match e {
                KeystoreError::WrongPassword => WalletError::key(format!(
                    "wrong password for key file {} (or the file was modified); try again",
                    path.display()
                )),
                other => WalletError::key(format!("cannot unlock key file {}: {other}", path.display())),
            })
        }
    }
}

/// Parse the key file at `path` without asking for a password.
pub fn open_key_file(path: &Path) -> Result<KeyFile, WalletError> {
    let text = read_text(path, KEY_FILE_BYTES_MAX, "key file", ErrorKind::Key).map_err(|e| {
        if e.message.contains("does not exist") {
            WalletError::key(format!(
                "key file {} does not exist; check --key, or create one with `wallet keygen --out {}`",
                path.display(),
                path.display()
            ))
        } else {
            e
        }
    })?;
    keystore::parse_key_file(&text)
        .map_err(|e| WalletError::key(format!("key file {} is not usable: {e}", path.display())))
}

/// Create `path` (which must not exist) readable and writable by the owner only, and write `contents`.
pub fn write_private_new(path: &Path, contents: &[u8]) -> Result<(), WalletError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => WalletError::usage(format!(
            "{} already exists; refusing to overwrite a key file: choose another --out path",
            path.display()
        )),
        io::ErrorKind::NotFound => {
            WalletError::generic(format!("cannot create {}: its directory does not exist", path.display()))
        }
        _ => WalletError::generic(format!("cannot create {}: {e}", path.display())),
    })?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(|e| {
        // Do not leave a half-written key file behind.
        let _ = std::fs::remove_file(path);
        WalletError::generic(format!("cannot write {}: {e}", path.display()))
    })
}

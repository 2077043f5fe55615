//! A minimal HTTP/1.1 GET for the doctor: one request per connection, one deadline over the whole
//! exchange, a bounded answer. The doctor only asks its own node's API (on loopback, usually) for a few
//! small JSON documents; a client library would be more code to trust than these hundred lines.
//!
//! Not a general client: no TLS, no redirects, no keep-alive; `Content-Length` and chunked bodies only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest answer read, headers included (`/validators` of a large set is some hundred KiB).
pub const RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// An answer: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a GET got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: SocketAddr, error: std::io::Error },
    #[error("no complete answer from {addr} within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u128 },
    #[error("reading from {addr}: {error}")]
    Io { addr: SocketAddr, error: std::io::Error },
    #[error("the answer from {addr} is larger than {max} bytes")]
    TooLarge { addr: SocketAddr, max: usize },
    #[error("{addr} does not answer HTTP: {detail}")]
    NotHttp { addr: SocketAddr, detail: String },
}

/// `GET path` on `addr`, within `timeout` in all.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let ms = timeout.as_millis();
    let timed_out =
        |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|error| {
        if timed_out(&error) { HttpError::Timeout { addr, ms } } else { HttpError::Connect { addr, error } }
    })?;
    let io = |error: std::io::Error| {
        if timed_out(&error) { HttpError::Timeout { addr, ms } } else { HttpError::Io { addr, error } }
    };
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_write_timeout(Some(left())).map_err(io)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(HttpError::Timeout { addr, ms });
        }
        stream.set_read_timeout(Some(left())).map_err(io)?;
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        if raw.len() + n > RESPONSE_BYTES_MAX {
            return Err(HttpError::TooLarge { addr, max: RESPONSE_BYTES_MAX });
        }
        raw.extend_from_slice(&buf[..n]);
    }
    parse(&raw).map_err(|detail| HttpError::NotHttp { addr, detail })
}

/// Split a whole answer (read to the end of the connection) into status and body.
fn parse(raw: &[u8]) -> Result<Response, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split_whitespace().collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") => {
            code.parse::<u16>().map_err(|_| format!("status line {status_line:?}"))?
        }
        _ => return Err(format!("status line {:?}", status_line.chars().take(60).collect::<String>())),
    };
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name == "content-length" {
            length = Some(value.parse::<usize>().map_err(|_| format!("content-length {value:?}"))?);
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or(format!("body of {} bytes, content-length {n}", rest.len()))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// The body of a chunked answer.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line not ended")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "chunk size is not text")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("chunk cut short")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("chunk not ended")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_chunked_and_refuses_garbage() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let e = get(addr, "/status", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
        drop(listener);
        let e = get(addr, "/status", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, HttpError::Connect { .. }), "{e}");
    }
}

//! A raw TCP client for what well-behaved HTTP clients cannot do: write exact bytes (a
//! header of a megabyte, a request never finished) and read until the peer closes. Every
//! read is bounded by a deadline. The misbehaving servers are `support::raw::RawServer`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a raw exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer closed the connection.
    Closed,
    /// A read error (reset).
    Error(ErrorKind),
    /// Nothing more within the limit: the connection is still open.
    Open,
}

/// Writes `request` (a write error is tolerated: the peer may refuse mid-way), then reads
/// until the peer closes or `limit` passes.
pub(crate) fn exchange(
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> (Vec<u8>, End, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let _ = stream.write_all(request);
    let (bytes, end) = read_until_closed(&mut stream, started + limit);
    (bytes, end, started.elapsed())
}

pub(crate) fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> (Vec<u8>, End) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (bytes, End::Open);
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return (bytes, End::Closed),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (bytes, End::Open);
            }
            Err(error) => return (bytes, End::Error(error.kind())),
        }
    }
}

/// The status code of a raw response, if it has a status line.
pub(crate) fn status_of(bytes: &[u8]) -> Option<u16> {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[..line_end]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The body of a raw response (everything after the head).
pub(crate) fn body_of(bytes: &[u8]) -> &[u8] {
    match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => &bytes[at + 4..],
        None => &[],
    }
}

/// Reads one response with a `Content-Length` from a keep-alive connection; its status.
pub(crate) fn read_response(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
        if bytes.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())?;
    while bytes.len() < head_end + length {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
    }
    status_of(&bytes)
}

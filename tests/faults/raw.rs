//! Raw TCP on 127.0.0.1 for the faults that well-behaved HTTP servers and clients cannot
//! produce: a server that runs any handler per connection (hangs, truncates, floods), and a
//! client that writes exact bytes and reads until the peer closes. Every read and handler
//! is bounded by socket timeouts, a deadline or the stop flag.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Handler = dyn Fn(TcpStream, &AtomicBool) + Send + Sync;

/// A loopback TCP server running `handler` on a thread per connection. Stopped on drop;
/// every handler is bounded by socket timeouts and the stop flag.
pub(crate) struct RawServer {
    pub(crate) addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    pub(crate) fn start(
        handler: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static,
    ) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a raw server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("raw server address");
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (count, stopping) = (Arc::clone(&connections), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                        let handler = Arc::clone(&handler);
                        let stopping = Arc::clone(&stopping);
                        std::thread::spawn(move || handler(stream, &stopping));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RawServer {
            addr,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads until the end of a request head (or `limit` bytes, EOF, timeout). The bytes read.
pub(crate) fn read_head(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    while head.len() < limit {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                head.extend_from_slice(&buffer[..n]);
                let tail = head.len().saturating_sub(n + 3);
                if head[tail..].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    head
}

/// Sleeps until `stop` is set, at most `limit`.
pub(crate) fn hold(stop: &AtomicBool, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

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

//! A raw TCP server on 127.0.0.1 for what well-behaved HTTP servers cannot do: hang,
//! truncate, flood, speak something else, or only count who called. Each connection runs
//! the test's handler on a thread of its own, bounded by socket timeouts and the stop flag.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Handler = dyn Fn(TcpStream, &AtomicBool) + Send + Sync;

/// A loopback TCP server running `handler` on a thread per connection. Stopped on drop;
/// every handler is bounded by socket timeouts and the stop flag.
pub struct RawServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    pub fn start(handler: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> RawServer {
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
            // Bounded even if a test forgets to drop it.
            let deadline = Instant::now() + Duration::from_secs(300);
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

    /// A server that accepts and closes every connection, only counting them: for an
    /// address that nobody should ever call.
    pub fn tripwire() -> RawServer {
        RawServer::start(|_, _| {})
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR` followed by `path`.
    pub fn url_of(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn connections(&self) -> usize {
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
pub fn read_head(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
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
pub fn hold(stop: &AtomicBool, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

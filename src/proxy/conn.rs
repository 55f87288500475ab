//! Client connections of the proxy listeners (SPEC §8, "Connections"): at most
//! `max_connections` open at once, a whole request head within `header_timeout`, an idle
//! keep-alive connection closed after `idle_timeout`, and the `jobgate_connections` gauge.
//!
//! Pingora 0.9 has no hook that sees a client connection both open and close (its
//! `ConnectionFilter` sees the accept only), and its own request-head timeout applies to each
//! read, not to the whole head: a client sending a byte every 59 s is never cut. So the proxy
//! listeners accept in [`GuardedService`], our own accept loop, and [`ConnGuard`] runs each
//! connection: it takes a slot or closes the socket, terminates TLS, and runs Pingora's
//! HTTP/1 keep-alive loop itself, reading each request head before Pingora sees the
//! connection. Every deadline is therefore ours, in one place, and the proxy hooks need no
//! change: Pingora parses a head that is already in memory.
//!
//! Memory (1 000 idle keep-alive connections, jemalloc): Pingora's own accept and HTTP/1
//! loops hold ~41 KB per idle connection: it starts reading the next request at once, so its
//! 13 KB per-request future, a 4 KiB head buffer and ~4 KB more stay allocated while the
//! client is idle; its accept task is 8.7 KB (the TLS handshake is inlined); its L4 buffers
//! live as long as the connection. Here an idle connection holds ~4 KB.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::{ListenFds, ShutdownWatch};
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The three knobs of SPEC §8, from `[server]`.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The series this module feeds, resolved once so that a connection touches atomics only.
#[derive(Clone)]
pub struct ConnMetrics {
    /// `jobgate_connections`
    pub open: IntGauge,
    /// `jobgate_connections_refused_total{reason="max_connections"}`
    pub refused_max_connections: IntCounter,
    /// `jobgate_connections_refused_total{reason="header_timeout"}`
    pub refused_header_timeout: IntCounter,
}

/// A request head larger than this is answered 431 and the connection closed: the head is
/// held in memory until complete, and Pingora's own bound is 1 MiB per connection.
pub const MAX_HEAD: usize = 64 * 1024;

/// Pingora's keep-alive timeout for a session (whole seconds, `Some(0)` = none). It only
/// switches keep-alive on: Pingora never waits for a head (it gets a complete one), and
/// the idle wait is ours.
const PINGORA_KEEPALIVE_SECS: u64 = 60;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`
const H2_PREFACE_LEN: usize = 24;

/// One read of a request head: Pingora's first read of a head is 4 KiB too.
const READ_CHUNK: usize = 4096;

/// Writes smaller than this are gathered until a flush, like Pingora's L4 write buffer
/// (`DEFAULT_L4_WRITE_BUFFER_SIZE`), so that a small response goes out in one segment.
const WRITE_COALESCE: usize = 1460;

const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
    Content-Length: 0\r\nConnection: close\r\n\r\n";

/// The open-connection count behind `max_connections`.
struct Admission {
    open: AtomicUsize,
    max: usize,
    metrics: ConnMetrics,
}

impl Admission {
    /// Takes one of the `max_connections` slots, or counts a refusal when all are held.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.refused_max_connections.inc();
            return None;
        }
        self.metrics.open.inc();
        Some(Slot(Arc::clone(self)))
    }
}

/// One held slot. Dropping it (connection closed, task dropped at shutdown, or a panic in
/// the proxy) gives the slot back, so the count cannot drift.
struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.open.dec();
    }
}

/// Runs each client connection of the proxy listeners around Pingora's HTTP app
/// (`HttpProxy`). The admin listener keeps its own service: not counted, not limited.
pub struct ConnGuard<A> {
    app: Arc<A>,
    limits: ConnLimits,
    /// Set when the listeners serve TLS: the handshake happens here, after the admission
    /// and within `header_timeout`.
    tls: Option<Acceptor>,
    admission: Arc<Admission>,
}

impl<A: HttpServerApp + Send + Sync + 'static> ConnGuard<A> {
    pub fn new(
        app: Arc<A>,
        limits: ConnLimits,
        tls: Option<Acceptor>,
        metrics: ConnMetrics,
    ) -> Self {
        ConnGuard {
            app,
            limits,
            tls,
            admission: Arc::new(Admission {
                open: AtomicUsize::new(0),
                max: limits.max_connections,
                metrics,
            }),
        }
    }

    /// An accepted TCP connection, from [`GuardedService`]'s accept loop.
    async fn serve_tcp(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        accepted: Instant,
        slot: Slot,
        shutdown: &ShutdownWatch,
    ) {
        let _ = tcp.set_nodelay(true);
        let mut l4 = L4Stream::from(tcp);
        // What Pingora's listener records, so that `session.client_addr()` works.
        let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
        let _ = digest.peer_addr.set(Some(peer.into()));
        l4.set_socket_digest(digest);
        self.serve(Box::new(l4), accepted, slot, shutdown).await;
    }

    /// An admitted connection, from either listener kind.
    async fn serve(
        &self,
        stream: Stream,
        accepted: Instant,
        _slot: Slot,
        shutdown: &ShutdownWatch,
    ) {
        let head_by = accepted + self.limits.header_timeout;
        let stream = match &self.tls {
            // Boxed: the handshake's state is large (~7 KB) and would otherwise stay in this
            // future for the connection's whole life.
            Some(acceptor) => match Box::pin(self.handshake(acceptor, stream, head_by)).await {
                Some(stream) => stream,
                None => return,
            },
            None => stream,
        };
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let mut stream = Box::new(GuardedStream::new(stream));
        if h2 {
            // The client preface is due within `header_timeout` too; after it, Pingora's h2
            // loop runs the connection, closed when idle by `h2_idle_timeout`.
            match stream
                .read_until(head_by, |buf| buf.len() >= H2_PREFACE_LEN)
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(()) => {
                    self.admission.metrics.refused_header_timeout.inc();
                    return;
                }
            }
            // Pingora's h2 loop returns `None`; were it to hand the stream back, it is
            // served here rather than by Pingora's accept loop, which would admit it again.
            let mut next = ServerApp::process_new(&self.app, stream, shutdown).await;
            while let Some(stream) = next {
                next = ServerApp::process_new(&self.app, stream, shutdown).await;
            }
        } else {
            self.serve_h1(stream, head_by, shutdown).await;
        }
    }

    /// The TLS handshake, by the first request's head deadline.
    async fn handshake(&self, acceptor: &Acceptor, stream: Stream, by: Instant) -> Option<Stream> {
        // Pingora's L4 stream: ours, or from a plain-TCP Pingora listener.
        let l4 = *stream.into_any().downcast::<L4Stream>().ok()?;
        let by = tokio::time::Instant::from_std(by);
        match tokio::time::timeout_at(by, acceptor.tls_handshake(l4)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(_)) => None,
            Err(_) => {
                self.admission.metrics.refused_header_timeout.inc();
                None
            }
        }
    }

    /// Pingora's HTTP/1 keep-alive loop (`impl ServerApp for T: HttpServerApp`,
    /// pingora-core src/apps/mod.rs:345-368), except that each request head is read here
    /// first, under the deadlines, and the session built only then: Pingora's per-request
    /// state is not held while the connection is idle.
    async fn serve_h1(
        &self,
        mut stream: Box<GuardedStream>,
        head_by: Instant,
        shutdown: &ShutdownWatch,
    ) {
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut watch = shutdown.clone();
        // The first request: its head is due within header_timeout of accept. Later ones:
        // the first byte within idle_timeout of the previous response, the head within
        // header_timeout of that byte.
        let mut wait = Wait::Head { by: head_by };
        loop {
            if *watch.borrow() {
                return; // shutting down: an idle connection is closed, as Pingora does
            }
            let head = tokio::select! {
                head = stream.read_head(wait, self.limits.header_timeout) => head,
                _ = watch.changed() => return,
            };
            match head {
                Head::Ready => {}
                Head::Closed | Head::Idle => return,
                Head::TimedOut => {
                    self.admission.metrics.refused_header_timeout.inc();
                    return;
                }
                Head::TooLarge => {
                    let _ = stream.write_all(TOO_LARGE).await;
                    let _ = stream.flush().await;
                    return;
                }
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(Some(PINGORA_KEEPALIVE_SECS));
                    session.set_keepalive_reuses_remaining(
                        self.app
                            .server_options()
                            .and_then(|options| options.keepalive_request_limit),
                    );
                }
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let Some(reused) = self.app.process_new_http(session, shutdown).await else {
                return;
            };
            let (next, next_settings) = reused.consume();
            // Pingora hands back the stream it was given, so this always succeeds.
            let Ok(next) = next.into_any().downcast::<GuardedStream>() else {
                return;
            };
            stream = next;
            settings = next_settings;
            wait = Wait::Next {
                idle_by: Instant::now() + self.limits.idle_timeout,
            };
        }
    }
}

/// Lets [`ConnGuard`] also run under Pingora's own `listening::Service` and listeners
/// (plain TCP; set their `L4BufferSettings` to 0/0), at the cost of Pingora's 8.7 KB accept
/// task per connection.
#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ConnGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Spawned right after accept(): for plain TCP Pingora's "handshake" only sized the
        // L4 buffers, so this is the accept time to within microseconds.
        let accepted = Instant::now();
        let slot = self.admission.admit()?; // refused: dropping `stream` closes the socket
        self.serve(stream, accepted, slot, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        // HttpProxy's cleanup wakes the keep-alive reads parked at shutdown: it must run.
        self.app.cleanup().await;
    }
}

/// The proxy listeners, in place of Pingora's `listening::Service`: an accept loop per
/// listener that refuses past `max_connections` before spawning anything and runs each
/// admitted connection in a task of its own.
pub struct GuardedService<A> {
    name: String,
    /// Bound by the caller, so that a bind error is reported as a setup error.
    listeners: Vec<std::net::TcpListener>,
    guard: Arc<ConnGuard<A>>,
}

impl<A> GuardedService<A> {
    pub fn new(name: &str, listeners: Vec<std::net::TcpListener>, guard: ConnGuard<A>) -> Self {
        GuardedService {
            name: name.to_string(),
            listeners,
            guard: Arc::new(guard),
        }
    }
}

/// ENFILE, EMFILE, ENOBUFS, ENOMEM: accept() fails at once again until a descriptor or some
/// memory is freed, so the loop pauses instead of spinning.
fn accept_must_pause(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(23 | 24 | 105 | 12))
}

async fn accept_loop<A: HttpServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    guard: Arc<ConnGuard<A>>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return; // stop accepting; open connections finish on their own
                }
                continue;
            }
        };
        match accepted {
            Ok((tcp, peer)) => {
                let at = Instant::now();
                let Some(slot) = guard.admission.admit() else {
                    continue; // dropping `tcp` closes it
                };
                let guard = Arc::clone(&guard);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { guard.serve_tcp(tcp, peer, at, slot, &shutdown).await });
            }
            Err(e) if accept_must_pause(&e) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {} // the peer gave up before accept (ECONNABORTED and the like)
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> pingora::services::Service for GuardedService<A> {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut loops = Vec::new();
        for listener in self.listeners.drain(..) {
            let listener = match listener
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(listener))
            {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(service = %self.name, "cannot listen: {e}");
                    continue;
                }
            };
            let guard = Arc::clone(&self.guard);
            loops.push(tokio::spawn(accept_loop(listener, guard, shutdown.clone())));
        }
        for accept in loops {
            let _ = accept.await;
        }
        // HttpProxy's cleanup wakes the keep-alive reads parked at shutdown.
        self.guard.app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// What [`GuardedStream::read_head`] waits for.
#[derive(Clone, Copy)]
enum Wait {
    /// The whole head by this time (the first request: accept + header_timeout).
    Head { by: Instant },
    /// A keep-alive connection: the first byte by `idle_by`, then the whole head within
    /// header_timeout of it.
    Next { idle_by: Instant },
}

/// How waiting for a request head ended.
enum Head {
    /// A whole head is in the stash.
    Ready,
    /// The client closed the connection (or it broke) first.
    Closed,
    /// No byte of a next request within idle_timeout: closed, not counted.
    Idle,
    /// The head was not complete by its deadline.
    TimedOut,
    /// The head grew past [`MAX_HEAD`].
    TooLarge,
}

/// Whether `buf` holds a whole request head: an empty line after the request line. Empty
/// lines before the request line are skipped, as Pingora's parser (httparse) does.
/// `scanned`: how much of `buf` an earlier call already searched.
fn head_complete(buf: &[u8], scanned: usize) -> bool {
    let start = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(buf.len());
    // The usual case, a head with no body behind it, without a scan.
    let tail = buf.get(start..).unwrap_or_default();
    if tail.ends_with(b"\n\n") || tail.ends_with(b"\n\r\n") {
        return true;
    }
    let mut at = scanned.saturating_sub(2).max(start);
    while let Some(offset) = buf
        .get(at..)
        .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
    {
        let newline = at + offset;
        match (buf.get(newline + 1), buf.get(newline + 2)) {
            (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => return true,
            _ => at = newline + 1,
        }
    }
    false
}

/// Pingora's view of a client connection: the real stream, plus the request-head bytes
/// [`ConnGuard`] read ahead (served first), plus a write buffer that exists only between a
/// small write and its flush.
pub struct GuardedStream {
    inner: Stream,
    stash: Vec<u8>,
    stash_pos: usize,
    write_buf: Vec<u8>,
}

impl GuardedStream {
    fn new(inner: Stream) -> Self {
        GuardedStream {
            inner,
            stash: Vec::new(),
            stash_pos: 0,
            write_buf: Vec::new(),
        }
    }

    /// One read from the socket, appended to the stash; 0 at end of stream. The read
    /// buffer is on the stack of this poll only, so an idle connection holds none.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Uninitialised: zeroing 4 KiB on every poll cost ~8 000 instructions a request.
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        self.stash.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }

    /// Reads into the stash until `done(stash)`, all of it by `by`. `Ok(false)`: the
    /// client closed first; `Err(())`: `by` passed.
    async fn read_until(
        &mut self,
        by: Instant,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Result<bool, ()> {
        let by = tokio::time::Instant::from_std(by);
        while !done(&self.stash) {
            match tokio::time::timeout_at(by, std::future::poll_fn(|cx| self.poll_fill(cx))).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(false),
                Ok(Ok(_)) => {}
                Err(_) => return Err(()),
            }
        }
        Ok(true)
    }

    /// Reads the next request head into the stash, under the deadlines of `wait`.
    async fn read_head(&mut self, wait: Wait, header_timeout: Duration) -> Head {
        let by = match wait {
            Wait::Head { by } => by,
            Wait::Next { idle_by } => {
                if self.stash.is_empty() {
                    match self.read_until(idle_by, |buf| !buf.is_empty()).await {
                        Ok(true) => {}
                        Ok(false) => return Head::Closed,
                        Err(()) => return Head::Idle,
                    }
                }
                Instant::now() + header_timeout
            }
        };
        let mut scanned = 0;
        let complete = self
            .read_until(by, |buf| {
                let done = head_complete(buf, scanned) || buf.len() > MAX_HEAD;
                scanned = buf.len();
                done
            })
            .await;
        match complete {
            // The last read may cross the limit and hold the end of the head: it must end
            // within the first MAX_HEAD bytes (what follows is a body or the next request).
            Ok(true)
                if self.stash.len() > MAX_HEAD
                    && !head_complete(self.stash.get(..MAX_HEAD).unwrap_or_default(), 0) =>
            {
                Head::TooLarge
            }
            Ok(true) => Head::Ready,
            Ok(false) => Head::Closed,
            Err(()) => Head::TimedOut,
        }
    }

    /// Writes out the gathered small writes and frees their buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.write_buf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.write_buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write_buf.drain(..n);
        }
        self.write_buf = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stash.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let rest = this.stash.get(this.stash_pos..).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        this.stash_pos += n;
        if this.stash_pos >= this.stash.len() {
            this.stash = Vec::new(); // freed: an idle connection holds no head bytes
            this.stash_pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_buf.len() + buf.len() > WRITE_COALESCE {
            ready!(this.poll_write_out(cx))?;
        }
        if buf.len() >= WRITE_COALESCE {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.write_buf.capacity() == 0 {
            this.write_buf.reserve_exact(WRITE_COALESCE);
        }
        this.write_buf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        // Best effort, as Pingora's L4 stream does with its own write buffer on drop.
        if !self.write_buf.is_empty() {
            let _ = self.poll_write_out(&mut Context::from_waker(Waker::noop()));
        }
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        let _ = std::future::poll_fn(|cx| self.poll_write_out(cx)).await;
        // Pingora's `Shutdown`, not tokio's `AsyncWriteExt::shutdown`.
        Shutdown::shutdown(self.inner.as_mut()).await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

/// Pingora peeks only for an h2c preface, which the proxy listeners do not accept.
#[async_trait]
impl Peek for GuardedStream {}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("stashed", &(self.stash.len() - self.stash_pos))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::head_complete;

    #[test]
    fn head_ends_at_the_first_empty_line() {
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0));
        assert!(head_complete(b"GET / HTTP/1.1\nHost: a\n\n", 0));
        assert!(head_complete(b"GET / HTTP/1.1\r\n\r\nbody", 0));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0));
        // leading empty lines are not the end of a head
        assert!(!head_complete(b"\r\n\r\n\nGET / HTTP/1.1\r\n", 0));
        assert!(head_complete(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0));
    }

    #[test]
    fn a_split_terminator_is_found_on_the_next_call() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for split in 1..head.len() {
            let first = head.get(..split).unwrap_or_default();
            let found_early = head_complete(first, 0);
            assert!(!found_early || split == head.len());
            assert!(head_complete(head, split), "split at {split}");
        }
    }
}

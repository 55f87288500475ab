//! Upstream peers of a route: addresses resolved once per config load (Pingora's
//! `HttpPeer::new` panics when a name does not resolve, cloudflare/pingora#570), round robin,
//! and a peer that refused a connection skipped for the next 10 s (SPEC §3 step 9).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::UpstreamUrl;

/// How long a peer that refused a connection is passed over.
pub const REFUSED_PEER_PAUSE: Duration = Duration::from_secs(10);

/// One upstream address.
#[derive(Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The URL's host: TLS server name, and the `Host` sent when the client's is replaced.
    pub host: String,
    /// `host:port` as written in the URL (port omitted when it is the scheme's default).
    pub authority: String,
    /// Milliseconds since the pool's epoch before which the peer is skipped.
    skip_until_ms: AtomicU64,
}

/// The peers of one route.
#[derive(Debug)]
pub struct UpstreamPool {
    peers: Vec<Peer>,
    next: AtomicUsize,
    epoch: Instant,
}

impl UpstreamPool {
    /// Resolves every URL now, so that a name that does not resolve is a load error, not a
    /// panic on the request path.
    pub fn resolve(urls: &[UpstreamUrl]) -> Result<UpstreamPool, String> {
        let peers = urls
            .iter()
            .map(|url| {
                let addr = (url.host.as_str(), url.port)
                    .to_socket_addrs()
                    .map_err(|error| {
                        format!("upstream host {:?} does not resolve: {error}", url.host)
                    })?
                    .next()
                    .ok_or_else(|| format!("upstream host {:?} has no address", url.host))?;
                let default_port = if url.tls { 443 } else { 80 };
                let authority = if url.port == default_port {
                    url.host.clone()
                } else if url.host.contains(':') {
                    format!("[{}]:{}", url.host, url.port)
                } else {
                    format!("{}:{}", url.host, url.port)
                };
                Ok(Peer {
                    addr,
                    tls: url.tls,
                    host: url.host.clone(),
                    authority,
                    skip_until_ms: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(UpstreamPool {
            peers,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    pub fn peer(&self, index: usize) -> Option<&Peer> {
        self.peers.get(index)
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next peer in rotation that is not paused and not `exclude` (the one that just
    /// failed). When every other peer is paused, a paused one is still better than none.
    pub fn pick(&self, exclude: Option<usize>) -> Option<usize> {
        let count = self.peers.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let candidates = (0..count)
            .map(|offset| (start + offset) % count)
            .filter(|index| Some(*index) != exclude || count == 1);
        let mut fallback = None;
        for index in candidates {
            if self.peers[index].skip_until_ms.load(Ordering::Relaxed) <= now {
                return Some(index);
            }
            fallback.get_or_insert(index);
        }
        fallback
    }

    /// Pauses a peer that refused a connection.
    pub fn mark_refused(&self, index: usize) {
        if let Some(peer) = self.peers.get(index) {
            let until = self.now_ms() + REFUSED_PEER_PAUSE.as_millis() as u64;
            peer.skip_until_ms.store(until, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(ports: &[u16]) -> UpstreamPool {
        let urls: Vec<UpstreamUrl> = ports
            .iter()
            .map(|port| UpstreamUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: *port,
            })
            .collect();
        UpstreamPool::resolve(&urls).expect("loopback resolves")
    }

    #[test]
    fn round_robin_skips_refused_peers() {
        let pool = pool(&[1001, 1002, 1003]);
        let picks: Vec<_> = (0..3).filter_map(|_| pool.pick(None)).collect();
        assert_eq!(picks, vec![0, 1, 2]);
        pool.mark_refused(1);
        let picks: Vec<_> = (0..4).filter_map(|_| pool.pick(None)).collect();
        assert!(!picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn exclude_moves_to_another_peer_and_all_paused_still_answers() {
        let pool = pool(&[1001, 1002]);
        for _ in 0..4 {
            let first = pool.pick(None).expect("a peer");
            let retry = pool.pick(Some(first)).expect("a peer");
            assert_ne!(first, retry);
        }
        pool.mark_refused(0);
        pool.mark_refused(1);
        assert!(pool.pick(None).is_some());
        let single = super::tests::pool(&[1001]);
        assert_eq!(single.pick(Some(0)), Some(0));
    }

    #[test]
    fn authority_omits_default_port() {
        let pool = UpstreamPool::resolve(&[
            UpstreamUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 80,
            },
            UpstreamUrl {
                tls: true,
                host: "localhost".into(),
                port: 8443,
            },
        ])
        .expect("resolves");
        assert_eq!(
            pool.peer(0).map(|p| p.authority.as_str()),
            Some("127.0.0.1")
        );
        assert_eq!(
            pool.peer(1).map(|p| p.authority.as_str()),
            Some("localhost:8443")
        );
    }
}

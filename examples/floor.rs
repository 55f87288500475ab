//! The load benchmark's floor (benches/load): a bare Pingora proxy of the same version as
//! jobgate (same `Cargo.lock`) and the same global allocator, doing nothing but forwarding
//! every request to one upstream. jobgate's cost is measured against it, so that what
//! Pingora itself costs is not charged to jobgate, and what jobgate adds is not hidden by
//! Pingora's share.
//!
//! ```sh
//! cargo build --release --example floor
//! target/release/examples/floor 127.0.0.1:18415 127.0.0.1:18401 [threads]
//! ```

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// Same allocator as jobgate (src/main.rs), or the ratio would measure the allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Forwards everything to one peer, cloned per request: nothing else.
struct Floor {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: floor LISTEN_ADDR UPSTREAM_ADDR [THREADS]");
        std::process::exit(2);
    };
    let Ok(upstream) = upstream.parse::<SocketAddr>() else {
        eprintln!("floor: UPSTREAM_ADDR must be an IP:port");
        std::process::exit(2);
    };
    let threads = args
        .get(3)
        .and_then(|threads| threads.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    // As jobgate does at start (src/main.rs).
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: String::new(),
        upgrade_sock: String::new(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let floor = Floor {
        peer: HttpPeer::new(upstream, false, String::new()),
    };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, floor);
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}

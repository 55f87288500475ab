//! The gateway's shared state: one `GatewayState` per config load, swapped whole behind an
//! `ArcSwap` so that a request sees one consistent config from start to end and the
//! request path never takes a lock to read it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::identity::SpoofFilter;
use crate::metrics::RouteMetrics;
use crate::routing::RouteTable;
use crate::upstream::UpstreamPool;

/// What a route needs at request time besides its config.
#[derive(Debug)]
pub struct RouteRuntime {
    pub upstreams: UpstreamPool,
    pub metrics: RouteMetrics,
}

/// Everything compiled from one config load.
#[derive(Debug)]
pub struct GatewayState {
    pub config: Config,
    pub table: RouteTable,
    /// Parallel to `config.routes`.
    pub routes: Vec<RouteRuntime>,
    /// Metrics of requests that matched no route (`route="none"`).
    pub unrouted: RouteMetrics,
    pub spoof_filter: SpoofFilter,
}

impl GatewayState {
    /// Compiles the request-time structures: the route table, resolved upstream
    /// addresses and per-route metric handles. Fails when an upstream name does not resolve.
    pub fn build(config: Config) -> Result<GatewayState, String> {
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let upstreams = UpstreamPool::resolve(&route.upstreams)
                    .map_err(|error| format!("route {:?}: {error}", route.name))?;
                Ok(RouteRuntime {
                    upstreams,
                    metrics: RouteMetrics::new(&route.name),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(GatewayState {
            table: RouteTable::new(&config.routes),
            routes,
            unrouted: RouteMetrics::new("none"),
            spoof_filter: SpoofFilter::new(config.issuers.iter().map(|issuer| issuer.as_ref())),
            config,
        })
    }
}

/// The live state, shared by the proxy, the admin listener and the reloader.
pub type SharedState = Arc<ArcSwap<GatewayState>>;

impl GatewayState {
    /// Whether the issuer at `index` has usable keys. Until token verification is wired
    /// in, no issuer does: an authenticated route answers 503 and `/readyz` says why.
    pub fn issuer_has_keys(&self, _index: usize) -> bool {
        false
    }
}

//! The gateway's shared state: one `GatewayState` per config load, swapped whole behind an
//! `ArcSwap` so that a request sees one consistent config from start to end and the
//! request path never takes a lock to read it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use pingora::utils::tls::WrappedX509;

use crate::auth::identity::route_header_value;
use crate::auth::verify::Authenticator;
use crate::config::Config;
use crate::metrics::RouteMetrics;
use crate::policy::limits::{ActiveLimit, BucketStore, LocalStore};
use crate::policy::replay::{LocalUsedTokens, UsedTokenStore};
use crate::policy::revocation::RevocationStore;
use crate::proxy::audit::AuditLog;
use crate::proxy::routing::RouteTable;
use crate::proxy::spoof::SpoofFilter;
use crate::proxy::upstream::UpstreamPool;

/// What a route needs at request time besides its config.
pub struct RouteRuntime {
    /// The route's name: names its state in a shared store.
    pub name: String,
    pub upstreams: UpstreamPool,
    pub metrics: RouteMetrics,
    /// The route's `upstream_ca`, loaded once per config load.
    pub upstream_ca: Option<Arc<[WrappedX509]>>,
    /// Keeps connections verified against different CAs in different pools: Pingora's
    /// connection-reuse hash does not include the peer's CA, so without this a connection
    /// verified with one route's CA could be reused by a route that must not trust it.
    pub pool_group: u64,
    /// `X-Jobgate-Route` for this route.
    pub route_header: HeaderValue,
    /// `[[route.limit]]` with their buckets, kept across reloads when unchanged.
    pub limits: Vec<ActiveLimit>,
    /// Tokens already admitted on a `single_use` route; kept across reloads by route name.
    pub used_tokens: Option<Arc<LocalUsedTokens>>,
}

/// Everything compiled from one config load.
pub struct GatewayState {
    pub config: Config,
    pub table: RouteTable,
    /// Parallel to `config.routes`.
    pub routes: Vec<RouteRuntime>,
    /// Metrics of requests that matched no route (`route="none"`).
    pub unrouted: RouteMetrics,
    pub spoof_filter: SpoofFilter,
    /// Key stores (one per issuer, in config order) and the verified-token cache.
    pub authenticator: Arc<Authenticator>,
    /// Shared by every load: the file is watched independently of the config.
    pub revocations: Arc<RevocationStore>,
    pub audit: AuditLog,
    /// Where rate-limit buckets live: this process's, or Redis with `[cluster]` (set at
    /// start, kept across reloads).
    pub buckets: Arc<dyn BucketStore>,
    /// With `[cluster]`: where `single_use` tokens are recorded instead of the routes' own
    /// records.
    pub used_store: Option<Arc<dyn UsedTokenStore>>,
}

impl GatewayState {
    /// Compiles the request-time structures: the route table, resolved upstream addresses,
    /// per-route metric handles, key stores and the audit writer. With `previous`, issuers
    /// whose settings did not change keep their keys and cached tokens, and an unchanged
    /// audit output keeps its writer. Fails when an upstream name does not resolve or the
    /// audit file cannot be opened.
    pub fn build(
        config: Config,
        previous: Option<&GatewayState>,
        revocations: Arc<RevocationStore>,
    ) -> Result<GatewayState, String> {
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let upstreams = UpstreamPool::resolve(&route.upstreams)
                    .map_err(|error| format!("route {:?}: {error}", route.name))?;
                let upstream_ca = route
                    .upstream_ca
                    .as_deref()
                    .map(crate::proxy::tls::load_ca)
                    .transpose()
                    .map_err(|error| format!("route {:?}: upstream_ca: {error}", route.name))?;
                let pool_group = upstream_ca.as_deref().map_or(0, ca_fingerprint);
                let route_header = route_header_value(&route.name).map_err(|_| {
                    format!(
                        "route {:?}: the name must be visible ASCII to be sent as X-Jobgate-Route",
                        route.name
                    )
                })?;
                let previous_limits = previous.and_then(|previous| {
                    let index = previous
                        .config
                        .routes
                        .iter()
                        .position(|old| old.name == route.name)?;
                    previous.routes.get(index).map(|old| old.limits.as_slice())
                });
                let used_tokens = route.single_use.then(|| {
                    previous
                        .and_then(|previous| {
                            let index = previous
                                .config
                                .routes
                                .iter()
                                .position(|old| old.name == route.name)?;
                            previous.routes.get(index)?.used_tokens.clone()
                        })
                        .unwrap_or_default()
                });
                Ok(RouteRuntime {
                    name: route.name.clone(),
                    limits: ActiveLimit::for_route(&route.name, &route.limits, previous_limits),
                    used_tokens,
                    upstreams,
                    metrics: RouteMetrics::new(&route.name, route.auth.is_some()),
                    upstream_ca,
                    pool_group,
                    route_header,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let audit = match previous {
            Some(previous) if previous.config.audit == config.audit => previous.audit.clone(),
            _ => AuditLog::start(&config.audit)?,
        };
        let capacity = config.server.token_cache_entries;
        let authenticator = Arc::new(match previous {
            Some(previous) => previous.authenticator.reload(&config.issuers, capacity),
            None => Authenticator::new(&config.issuers, capacity),
        });
        revocations.set_path(config.revocation_file.clone());
        Ok(GatewayState {
            table: RouteTable::new(&config.routes),
            routes,
            unrouted: RouteMetrics::new("none", false),
            spoof_filter: SpoofFilter::new(config.issuers.iter().map(|issuer| issuer.as_ref())),
            authenticator,
            revocations,
            audit,
            buckets: previous.map_or_else(
                || Arc::new(LocalStore) as Arc<dyn BucketStore>,
                |previous| Arc::clone(&previous.buckets),
            ),
            used_store: previous.and_then(|previous| previous.used_store.clone()),
            config,
        })
    }

    /// Whether the issuer at `index` has usable keys.
    pub fn issuer_has_keys(&self, index: usize) -> bool {
        self.authenticator.has_keys(index)
    }
}

/// A stable, non-zero identity of a CA list (zero is the pool of system-root connections).
fn ca_fingerprint(certificates: &[WrappedX509]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for certificate in certificates {
        certificate.borrow_raw_cert().hash(&mut hasher);
    }
    hasher.finish().max(1)
}

/// The live state, shared by the proxy, the admin listener and the reloader.
pub type SharedState = Arc<ArcSwap<GatewayState>>;

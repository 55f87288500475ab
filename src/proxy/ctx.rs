//! What one request carries from hook to hook ([`RequestCtx`]), and the count of requests
//! in flight that a graceful shutdown waits for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::config::rules::RuleRef;
use crate::metrics::RouteMetrics;
use crate::proxy::audit::AuditIdentity;
use crate::proxy::authorize::Allowed;
use crate::proxy::state::GatewayState;
use crate::refusal::{Outcome, Reason};

/// Requests between `new_ctx` and the end of `logging`, so that SIGTERM can exit as soon as
/// the last one finishes instead of sleeping the whole grace period (pingora#719).
pub static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// What one request carries from hook to hook.
pub struct RequestCtx {
    /// The config this request runs under from start to end, even across a reload.
    pub(super) state: Arc<GatewayState>,
    pub(super) started: Instant,
    pub(super) route: Option<usize>,
    pub(super) outcome: Option<Outcome>,
    /// The upstream peer last tried, so a retry moves on to another one.
    pub(super) peer: Option<usize>,
    pub(super) retried: bool,
    pub(super) upstream_status: Option<u16>,
    /// Why the request was refused, or `policy_denied` for a shadow-mode `would_deny`.
    pub(super) reason: Option<Reason>,
    /// The rule that decided, for the audit log.
    pub(super) rule: Option<RuleRef>,
    pub(super) identity: AuditIdentity,
    /// Set when an authenticated request is let through.
    pub(super) allowed: Option<Allowed>,
    /// `Retry-After` seconds of a `rate_limited` refusal.
    pub(super) retry_after: Option<u64>,
}

impl RequestCtx {
    /// A new request under `state`, counted in [`IN_FLIGHT`] until dropped.
    pub(super) fn new(state: Arc<GatewayState>) -> RequestCtx {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        RequestCtx {
            state,
            started: Instant::now(),
            route: None,
            outcome: None,
            peer: None,
            retried: false,
            upstream_status: None,
            reason: None,
            rule: None,
            identity: AuditIdentity::None,
            allowed: None,
            retry_after: None,
        }
    }

    pub(super) fn route_metrics(&self) -> &RouteMetrics {
        match self.route.and_then(|index| self.state.routes.get(index)) {
            Some(route) => &route.metrics,
            None => &self.state.unrouted,
        }
    }

    pub(super) fn route_name(&self) -> Option<&str> {
        self.route
            .and_then(|index| self.state.config.routes.get(index))
            .map(|route| route.name.as_str())
    }

    pub(super) fn is_authenticated_route(&self) -> bool {
        self.route
            .and_then(|index| self.state.config.routes.get(index))
            .is_some_and(|route| route.auth.is_some())
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

//! The Pingora glue: each hook is a few lines that call `routing`, `verify`, `policy`,
//! `identity`, `upstream` and `metrics`. Read top to bottom, this file is a request's life.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraSocketAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};

use crate::audit::{AuditIdentity, AuditRecord};
use crate::auth::identity::ROUTE_HEADER_WIRE;
use crate::authorize::{Allowed, authorize};
use crate::clock::unix_now;
use crate::config::rules::RuleRef;
use crate::metrics::{RouteMetrics, UpstreamClass};
use crate::refusal::{Outcome, Reason, RefusalResponse, is_grpc};
use crate::routing::normalise_path;
use crate::server::IN_FLIGHT;
use crate::state::{GatewayState, SharedState};

/// How long an idle keep-alive client connection stays open between requests.
pub const KEEPALIVE_IDLE_SECONDS: u64 = 60;

/// The proxy service's logic. One per listener kind, so `X-Forwarded-Proto` is known.
pub struct Gateway {
    pub state: SharedState,
    pub tls: bool,
}

/// What one request carries from hook to hook.
pub struct RequestCtx {
    /// The config this request runs under from start to end, even across a reload.
    state: Arc<GatewayState>,
    started: Instant,
    route: Option<usize>,
    outcome: Option<Outcome>,
    /// The upstream peer last tried, so a retry moves on to another one.
    peer: Option<usize>,
    retried: bool,
    upstream_status: Option<u16>,
    /// Why the request was refused, or `policy_denied` for a shadow-mode `would_deny`.
    reason: Option<Reason>,
    /// The rule that decided, for the audit log.
    rule: Option<RuleRef>,
    identity: AuditIdentity,
    /// Set when an authenticated request is let through.
    allowed: Option<Allowed>,
}

impl RequestCtx {
    fn route_metrics(&self) -> &RouteMetrics {
        match self.route.and_then(|index| self.state.routes.get(index)) {
            Some(route) => &route.metrics,
            None => &self.state.unrouted,
        }
    }

    fn route_name(&self) -> Option<&str> {
        self.route
            .and_then(|index| self.state.config.routes.get(index))
            .map(|route| route.name.as_str())
    }

    fn is_authenticated_route(&self) -> bool {
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

/// Sends a refusal and records its outcome. Refusals keep the connection alive: they are
/// written as a complete response with a length, not through `respond_error`, which closes.
async fn refuse(session: &mut Session, ctx: &mut RequestCtx, reason: Reason) -> Result<bool> {
    let grpc = is_grpc(
        session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|value| value.as_bytes()),
    );
    let refusal = RefusalResponse::new(reason, ctx.route_name(), grpc);
    ctx.outcome = Some(reason.outcome());
    ctx.reason = Some(reason);
    if ctx.is_authenticated_route() && reason.is_auth_failure() {
        ctx.route_metrics().auth_failure(reason);
    }
    let mut header = ResponseHeader::build(refusal.status, Some(refusal.headers.len() + 1))?;
    for (name, value) in refusal.headers {
        header.insert_header(name, value)?;
    }
    header.insert_header(http::header::CONTENT_LENGTH, refusal.body.len())?;
    let end_of_stream = refusal.body.is_empty();
    session
        .write_response_header(Box::new(header), end_of_stream)
        .await?;
    if !end_of_stream {
        session
            .write_response_body(Some(Bytes::from(refusal.body)), true)
            .await?;
    }
    Ok(true)
}

/// The host a request names: the URI's authority (HTTP/2, absolute-form) or `Host`.
fn request_host(request: &RequestHeader) -> Option<&str> {
    request.uri.host().or_else(|| {
        request
            .headers
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok())
    })
}

/// Replaces the request's path with its normalised form, keeping the query.
fn set_path(request: &mut RequestHeader, path: &str) -> Result<()> {
    let uri = match request.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let uri = http::Uri::try_from(uri)
        .map_err(|e| Error::because(ErrorType::InternalError, "normalised path", e))?;
    request.set_uri(uri);
    Ok(())
}

fn client_ip(session: &Session) -> Option<String> {
    match session.client_addr()? {
        PingoraSocketAddr::Inet(addr) => Some(addr.ip().to_string()),
        _ => None,
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        RequestCtx {
            state: self.state.load_full(),
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
        }
    }

    /// Runs once the request headers are read: strips spoofed identity headers, normalises
    /// the path, picks the route and, on authenticated routes, decides. `Ok(true)` means a
    /// refusal was sent and the request ends here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Pingora keeps an idle HTTP/1.1 connection open forever after its first request;
        // an idle client must not hold a socket and its buffers indefinitely.
        session
            .as_downstream_mut()
            .set_keepalive(Some(KEEPALIVE_IDLE_SECONDS));
        let state = Arc::clone(&ctx.state);
        let request = session.req_header_mut();
        state.spoof_filter.strip(request);
        let path = match normalise_path(request.uri.path()) {
            Ok(path) => path,
            Err(reason) => return refuse(session, ctx, reason).await,
        };
        let route = state
            .table
            .lookup(request_host(request), &path, &request.method);
        if let Cow::Owned(path) = path {
            set_path(request, &path)?;
        }
        let Some(route_index) = route else {
            return refuse(session, ctx, Reason::NoRoute).await;
        };
        ctx.route = Some(route_index);
        let Some(route) = state.config.routes.get(route_index) else {
            return refuse(session, ctx, Reason::NoRoute).await;
        };
        let Some(auth) = &route.auth else {
            ctx.outcome = Some(Outcome::Public);
            return Ok(false);
        };
        let authorization = session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|value| value.as_bytes());
        let now = u64::try_from(unix_now()).unwrap_or(0);
        match authorize(&state, auth, authorization, now).await {
            Ok(allowed) => {
                ctx.identity = AuditIdentity::Verified {
                    token: Arc::clone(&allowed.token),
                    issuer: Arc::clone(&allowed.issuer),
                };
                ctx.rule = allowed.rule;
                if allowed.would_deny {
                    ctx.outcome = Some(Outcome::WouldDeny);
                    ctx.reason = Some(Reason::PolicyDenied);
                } else {
                    ctx.outcome = Some(Outcome::Allowed);
                }
                ctx.allowed = Some(allowed);
                Ok(false)
            }
            Err(refused) => {
                ctx.identity = refused.identity;
                ctx.rule = refused.rule;
                refuse(session, ctx, refused.reason).await
            }
        }
    }

    /// Picks the next upstream peer of the route in rotation, skipping paused ones.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (route, runtime) = ctx
            .route
            .and_then(|index| {
                Some((
                    ctx.state.config.routes.get(index)?,
                    ctx.state.routes.get(index)?,
                ))
            })
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in upstream_peer"))?;
        let index = runtime
            .upstreams
            .pick(ctx.peer)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "route has no upstream"))?;
        let peer = runtime
            .upstreams
            .peer(index)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "upstream index"))?;
        ctx.peer = Some(index);
        let mut http_peer = HttpPeer::new(peer.addr, peer.tls, peer.host.clone());
        http_peer.options.connection_timeout = Some(route.timeout);
        http_peer.options.total_connection_timeout = Some(route.timeout);
        http_peer.options.read_timeout = Some(route.timeout);
        http_peer.options.write_timeout = Some(route.timeout);
        http_peer.options.ca = runtime.upstream_ca.clone();
        http_peer.group_key = runtime.pool_group;
        Ok(Box::new(http_peer))
    }

    /// Adds the forwarding headers the upstream expects from a reverse proxy.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(ip) = client_ip(session) {
            let forwarded_for = match upstream_request
                .headers
                .get("x-forwarded-for")
                .and_then(|value| value.to_str().ok())
            {
                Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {ip}"),
                _ => ip,
            };
            upstream_request.insert_header("x-forwarded-for", forwarded_for)?;
        }
        upstream_request
            .insert_header("x-forwarded-proto", if self.tls { "https" } else { "http" })?;
        if let Some(allowed) = &ctx.allowed {
            let runtime = ctx.route.and_then(|index| ctx.state.routes.get(index));
            let auth = ctx
                .route
                .and_then(|index| ctx.state.config.routes.get(index))
                .and_then(|route| route.auth.as_ref());
            // Built and checked in `authorize`; here only reference-counted copies.
            if let Ok(headers) = allowed.token.identity_headers(&allowed.issuer) {
                for (name, value) in headers.iter() {
                    upstream_request.insert_header(name.clone(), value.clone())?;
                }
            }
            if let Some(runtime) = runtime {
                upstream_request.insert_header(ROUTE_HEADER_WIRE, runtime.route_header.clone())?;
            }
            if auth.is_none_or(|auth| auth.strip_authorization) {
                upstream_request.remove_header(&http::header::AUTHORIZATION);
            }
        }
        if upstream_request.headers.get(http::header::HOST).is_none() {
            // An HTTP/2 client names the host in `:authority`; HTTP/1.1 upstreams need `Host`.
            let authority = upstream_request.uri.authority().map(|a| a.to_string());
            let host = match (
                authority,
                ctx.peer.and_then(|i| {
                    ctx.route
                        .and_then(|r| ctx.state.routes.get(r))
                        .and_then(|r| r.upstreams.peer(i))
                }),
            ) {
                (Some(authority), _) => Some(authority),
                (None, Some(peer)) => Some(peer.authority.clone()),
                (None, None) => None,
            };
            if let Some(host) = host {
                upstream_request.insert_header(http::header::HOST, host)?;
            }
        }
        Ok(())
    }

    /// Notes the upstream's status for the metrics.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !upstream_response.status.is_informational() {
            ctx.upstream_status = Some(upstream_response.status.as_u16());
        }
        Ok(())
    }

    /// A connection to the peer failed: pause the peer and retry once on the next one.
    /// Nothing has been sent upstream yet, so the retry cannot repeat a side effect.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut error: Box<Error>,
    ) -> Box<Error> {
        let runtime = ctx.route.and_then(|route| ctx.state.routes.get(route));
        if let (Some(runtime), Some(peer)) = (runtime, ctx.peer) {
            runtime.upstreams.mark_refused(peer);
            error.set_retry(!ctx.retried && runtime.upstreams.len() > 1);
        }
        ctx.retried = true;
        error
    }

    /// The request failed for good. Upstream failures answer 502 `upstream_unreachable`
    /// (unless the response had already started); other errors keep Pingora's answers.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match error.esource() {
            ErrorSource::Upstream => {
                ctx.outcome = Some(Outcome::UpstreamError);
                if session.response_written().is_none()
                    && refuse(session, ctx, Reason::UpstreamUnreachable)
                        .await
                        .is_ok()
                {
                    return FailToProxy {
                        error_code: 502,
                        can_reuse_downstream: false,
                    };
                }
                502
            }
            ErrorSource::Downstream => match error.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => match error.etype() {
                ErrorType::HTTPStatus(code) => *code,
                _ => 500,
            },
        };
        if code > 0 && session.response_written().is_none() {
            // Best effort: the client may already be gone.
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Runs once per request at its end, whatever happened: metrics.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let metrics = ctx.route_metrics();
        let upstream_failed = error.is_some_and(|e| *e.esource() == ErrorSource::Upstream);
        let outcome = if upstream_failed {
            Some(Outcome::UpstreamError)
        } else {
            ctx.outcome
        };
        let Some(outcome) = outcome else {
            // The request never got far enough to have an outcome (e.g. the client left
            // before sending headers): nothing to count.
            return;
        };
        metrics.request(outcome);
        metrics
            .duration
            .observe(ctx.started.elapsed().as_secs_f64());
        if let Some(status) = ctx.upstream_status {
            metrics.upstream_response(UpstreamClass::of_status(status));
        } else if upstream_failed {
            metrics.upstream_response(UpstreamClass::Error);
        }
        if ctx.is_authenticated_route() && !ctx.state.audit.is_off() {
            let record = audit_record(session, ctx, outcome);
            ctx.state.audit.record(record);
        }
    }
}

/// The audit line of a request on an authenticated route (SPEC §6).
fn audit_record(session: &Session, ctx: &mut RequestCtx, outcome: Outcome) -> AuditRecord {
    let request = session.req_header();
    let status = session
        .response_written()
        .map_or(0, |response| response.status.as_u16());
    let reason = match outcome {
        Outcome::UpstreamError => Some(Reason::UpstreamUnreachable),
        _ => ctx.reason,
    };
    AuditRecord {
        time: SystemTime::now(),
        route: ctx.route_name().unwrap_or("none").to_owned(),
        outcome,
        reason,
        rule: ctx.rule,
        status,
        method: request.method.clone(),
        path: request.uri.path().to_owned(),
        client_ip: match session.client_addr() {
            Some(PingoraSocketAddr::Inet(addr)) => Some(addr.ip()),
            _ => None,
        },
        identity: std::mem::replace(&mut ctx.identity, AuditIdentity::None),
        upstream_status: ctx.upstream_status,
        duration: ctx.started.elapsed(),
    }
}

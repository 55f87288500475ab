//! The Pingora glue: jobgate's [`ProxyHttp`] implementation. Each hook is a few lines that
//! call `routing`, `authorize`, `upstream` and `metrics`/`audit`; read top to bottom, this
//! file is a request's life. Every hook says when Pingora runs it, what it may change and
//! what its return value means.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use http::header::InvalidHeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraSocketAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};

use super::ctx::RequestCtx;
use super::session::{audit_record, bearer_token, client_addr, refuse, request_host, set_path};
use crate::auth::identity::ROUTE_HEADER_WIRE;
use crate::clock::unix_now;
use crate::metrics::UpstreamClass;
use crate::policy::limits::{LimitVerdict, monotonic_ns, take_client_ip};
use crate::proxy::audit::AuditIdentity;
use crate::proxy::authorize::{admit, authorize};
use crate::proxy::routing::normalise_path;
use crate::proxy::state::SharedState;
use crate::refusal::{Outcome, Reason};

const FORWARDED_FOR: Bytes = Bytes::from_static(b"x-forwarded-for");
const FORWARDED_PROTO: Bytes = Bytes::from_static(b"x-forwarded-proto");

/// The client's address as an `X-Forwarded-For` value: an IPv4 address written by hand,
/// as `Ipv4Addr`'s `Display` costs ~1.6 k instructions through `fmt` and a `String`.
fn ip_header_value(ip: std::net::IpAddr) -> std::result::Result<HeaderValue, InvalidHeaderValue> {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::try_from(ip.to_string());
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (index, octet) in v4.octets().into_iter().enumerate() {
        if index > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for digit in &digits[skip..] {
            text[len] = b'0' + digit;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&text[..len])
}

/// The proxy service's logic. One per listener kind, so `X-Forwarded-Proto` is known.
pub struct Gateway {
    pub state: SharedState,
    pub tls: bool,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// Runs first, before the request is read: the request takes the current config for
    /// its whole life (a reload mid-request does not change it) and counts as in flight
    /// until its context is dropped after `logging`.
    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.state.load_full())
    }

    /// Runs once per service at start. Pingora's default registers a response-compression
    /// module that stays disabled unless a request turns it on, which jobgate never does;
    /// it still costs ~1.6 k instructions per request to run its hooks.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Runs once the request headers are read: strips spoofed identity headers, normalises
    /// the path, picks the route and, on authenticated routes, decides. `Ok(true)` means a
    /// refusal was sent and the request ends here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
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
        let runtime = state.routes.get(route_index);
        let limits = runtime.map_or(&[][..], |runtime| runtime.limits.as_slice());
        if !limits.is_empty() {
            let client = client_addr(session, &state);
            let verdict = match client {
                Some(client) => {
                    take_client_ip(state.buckets.as_ref(), limits, client, monotonic_ns()).await
                }
                None => LimitVerdict::Admitted,
            };
            if let LimitVerdict::Limited { retry_after } = verdict {
                ctx.retry_after = Some(LimitVerdict::retry_after_seconds(retry_after));
                return refuse(session, ctx, Reason::RateLimited).await;
            }
        }
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
                if let Some(runtime) = runtime {
                    let token = match runtime.used_tokens {
                        Some(_) => bearer_token(session, &state),
                        None => &[][..],
                    };
                    if let Err(refused) = admit(&state, runtime, &allowed, token, now).await {
                        ctx.retry_after = refused.retry_after;
                        return refuse(session, ctx, refused.reason).await;
                    }
                }
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
        if let Some(PingoraSocketAddr::Inet(peer)) = session.client_addr() {
            let ip = peer.ip();
            let forwarded_for = match upstream_request
                .headers
                .get("x-forwarded-for")
                .and_then(|value| value.to_str().ok())
            {
                Some(earlier) if !earlier.trim().is_empty() => {
                    HeaderValue::try_from(format!("{earlier}, {ip}"))
                }
                _ => ip_header_value(ip),
            };
            let forwarded_for = forwarded_for
                .map_err(|_| Error::explain(ErrorType::InternalError, "x-forwarded-for value"))?;
            upstream_request.insert_header(FORWARDED_FOR, forwarded_for)?;
        }
        let proto = if self.tls { "https" } else { "http" };
        upstream_request.insert_header(FORWARDED_PROTO, HeaderValue::from_static(proto))?;
        if let Some(allowed) = &ctx.allowed {
            let runtime = ctx.route.and_then(|index| ctx.state.routes.get(index));
            let auth = ctx
                .route
                .and_then(|index| ctx.state.config.routes.get(index))
                .and_then(|route| route.auth.as_ref());
            // Built and checked in `authorize`; here only reference-counted copies.
            if let Ok(headers) = allowed.token.identity_headers() {
                for (name, value) in headers.iter(&allowed.token.claims) {
                    // The spoof filter removed every client-sent header of these names, so
                    // appending adds the one value, minus `insert`'s search for old ones
                    // (~40 instructions a header); only a name jobgate itself set above
                    // must replace.
                    if *name == FORWARDED_FOR || *name == FORWARDED_PROTO {
                        upstream_request.insert_header(name.clone(), value)?;
                    } else {
                        upstream_request.append_header(name.clone(), value)?;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_value_is_the_display_form() {
        let addresses: [std::net::IpAddr; 5] = [
            [127, 0, 0, 1].into(),
            [0, 9, 10, 99].into(),
            [100, 199, 200, 255].into(),
            [10, 1, 20, 250].into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        ];
        for ip in addresses {
            let value = ip_header_value(ip).expect("an address is a header value");
            assert_eq!(value.to_str().ok(), Some(ip.to_string().as_str()));
        }
    }
}

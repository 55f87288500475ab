//! What the hooks read from and write to the Pingora session: the request's host and path,
//! the client's address, a refusal written as a complete response, and the audit record
//! of a finished request.

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;
use pingora::ErrorType;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraSocketAddr;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::state::GatewayState;
use crate::auth::verify::extract_bearer;
use crate::proxy::audit::{AuditIdentity, AuditRecord};
use crate::proxy::refusal::{RefusalResponse, is_grpc};
use crate::refusal::{Outcome, Reason};

/// Sends a refusal and records its outcome. Refusals keep the connection alive: they are
/// written as a complete response with a length, not through `respond_error`, which closes.
pub(super) async fn refuse(
    session: &mut Session,
    ctx: &mut RequestCtx,
    reason: Reason,
) -> Result<bool> {
    let grpc = is_grpc(
        session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|value| value.as_bytes()),
    );
    let mut refusal = RefusalResponse::new(reason, ctx.route_name(), grpc);
    if let Some(seconds) = ctx.retry_after {
        refusal = refusal.with_retry_after(seconds);
    }
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
pub(super) fn request_host(request: &RequestHeader) -> Option<&str> {
    request.uri.host().or_else(|| {
        request
            .headers
            .get(http::header::HOST)
            .and_then(|value| value.to_str().ok())
    })
}

/// Replaces the request's path with its normalised form, keeping the query.
pub(super) fn set_path(request: &mut RequestHeader, path: &str) -> Result<()> {
    let uri = match request.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let uri = http::Uri::try_from(uri)
        .map_err(|e| Error::because(ErrorType::InternalError, "normalised path", e))?;
    request.set_uri(uri);
    Ok(())
}

/// The client's address (SPEC §8): the TCP peer, or behind `trusted_proxies` the rightmost
/// untrusted `X-Forwarded-For` entry. The audit log and `client_ip` limits read this one.
pub(super) fn client_addr(session: &Session, state: &GatewayState) -> Option<IpAddr> {
    let PingoraSocketAddr::Inet(peer) = session.client_addr()? else {
        return None;
    };
    Some(
        state.config.server.trusted_proxies.client_ip(
            peer.ip(),
            session
                .req_header()
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|value| value.as_bytes()),
        ),
    )
}

/// The bearer token's bytes, for a request `authorize` already admitted (so there is exactly
/// one); empty otherwise.
pub(super) fn bearer_token<'a>(session: &'a Session, state: &GatewayState) -> &'a [u8] {
    let values = session
        .req_header()
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|value| value.as_bytes());
    extract_bearer(values, state.config.server.max_token_bytes).map_or(&[][..], str::as_bytes)
}

/// The audit line of a request on an authenticated route (SPEC §6).
pub(super) fn audit_record(
    session: &Session,
    ctx: &mut RequestCtx,
    outcome: Outcome,
) -> AuditRecord {
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
        client_ip: client_addr(session, &ctx.state),
        identity: std::mem::replace(&mut ctx.identity, AuditIdentity::None),
        upstream_status: ctx.upstream_status,
        duration: ctx.started.elapsed(),
    }
}

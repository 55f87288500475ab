//! The admin listener: `/healthz`, `/readyz` and `/metrics` (SPEC §5), and the
//! `/revocations` API (SPEC §9, in `ops::revocations`), on its own address so that the proxy
//! port never exposes them.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::metrics;
use crate::ops::revocations::{RevocationApi, is_api_path};
use crate::proxy::state::{GatewayState, SharedState};

/// Serves the admin endpoints from the live state.
pub struct AdminApp {
    pub state: SharedState,
    pub revocations: RevocationApi,
}

/// What `/readyz` reports: ready, or the list of what is missing.
pub fn readiness(state: &GatewayState) -> Result<(), Vec<String>> {
    let missing: Vec<String> = state
        .authenticator
        .issuers_without_keys()
        .into_iter()
        .map(|issuer| format!("issuer {issuer}: no usable keys"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let plain = "text/plain; charset=utf-8";
        if is_api_path(session.req_header().uri.path()) {
            let state = self.state.load_full();
            return self.revocations.respond(&state, session).await;
        }
        if session.req_header().method != http::Method::GET
            && session.req_header().method != http::Method::HEAD
        {
            return text(StatusCode::METHOD_NOT_ALLOWED, plain, "GET only\n".into());
        }
        match session.req_header().uri.path() {
            "/healthz" => text(StatusCode::OK, plain, "ok\n".into()),
            "/readyz" => match readiness(&self.state.load()) {
                Ok(()) => text(StatusCode::OK, plain, "ready\n".into()),
                Err(missing) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    plain,
                    format!("not ready:\n{}\n", missing.join("\n")),
                ),
            },
            "/metrics" => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics().render(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                plain,
                "not found: try /healthz, /readyz, /metrics or /revocations\n".into(),
            ),
        }
    }
}

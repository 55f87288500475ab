//! The `/revocations` admin API (SPEC §9) on the admin listener: add, list and delete runtime
//! revocations while the gateway runs. `jobgate revoke` is its client.
//!
//! Off (404) unless `[server] admin_token_file` is set; then every request must carry that
//! token as a bearer token (401 otherwise). The token is read from the live config, so a
//! reload that changes the file changes the token. Answers are JSON; a refusal is
//! `{"error": "…"}` with a message for a person.

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use pingora::protocols::http::ServerSession;
use serde_json::{Value, json};

use crate::clock;
use crate::config::AdminToken;
use crate::policy::revocation::runtime::{
    MAX_ENTRY_BYTES, NoRuntimeStore, RuntimeEntry, RuntimeRevocations, RuntimeStoreError,
    rfc3339_seconds,
};
use crate::policy::revocation::state_file::StateFile;
use crate::policy::revocation::{RevocationStore, file_entry_id};
use crate::proxy::state::GatewayState;

/// The path of the API; `/revocations/{id}` names one entry.
pub const PATH: &str = "/revocations";

/// A client gets this long to send a `POST` body once its head arrived.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// True for the paths this API answers.
pub fn is_api_path(path: &str) -> bool {
    path == PATH || path.starts_with("/revocations/")
}

/// Where runtime entries are kept, for the admin listener.
pub struct RevocationApi {
    pub runtime: Arc<dyn RuntimeRevocations>,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Vec<u8>> {
    let mut body = body.to_string().into_bytes();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response<Vec<u8>> {
    json_response(status, &json!({ "error": message.into() }))
}

/// Whether the request carries the admin token as `Authorization: Bearer <token>`.
fn authorized(session: &ServerSession, token: &AdminToken) -> bool {
    let Some(value) = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
    else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, presented)) = value
        .iter()
        .position(|byte| *byte == b' ')
        .map(|space| (&value[..space], &value[space + 1..]))
    else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer") && token.accepts(presented.trim_ascii())
}

impl RevocationApi {
    /// Answers one request on a `/revocations` path.
    pub async fn respond(
        &self,
        state: &GatewayState,
        session: &mut ServerSession,
    ) -> Response<Vec<u8>> {
        let Some(token) = &state.config.server.admin_token else {
            session.set_keepalive(None);
            return refusal(
                StatusCode::NOT_FOUND,
                "the revocation API is off: set `[server] admin_token_file` to enable it",
            );
        };
        if !authorized(session, token) {
            session.set_keepalive(None);
            let mut response = refusal(
                StatusCode::UNAUTHORIZED,
                "this API needs `Authorization: Bearer <token>` with the token of \
                 `admin_token_file`",
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        let path = session.req_header().uri.path().to_owned();
        let method = session.req_header().method.clone();
        let store = &state.revocations;
        match (path.strip_prefix("/revocations/"), &method) {
            (None, &http::Method::GET) => list(store),
            (None, &http::Method::POST) => self.add(store, session).await,
            (Some(id), &http::Method::DELETE) if !id.is_empty() => self.delete(store, id).await,
            (None, _) => method_not_allowed(session, "GET, POST"),
            (Some(_), _) => method_not_allowed(session, "DELETE"),
        }
    }

    async fn add(&self, store: &RevocationStore, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session).await {
            Ok(body) => body,
            Err(response) => {
                session.set_keepalive(None);
                return *response;
            }
        };
        let entry = match RuntimeEntry::from_request(&body, clock::unix_now()) {
            Ok(entry) => entry,
            Err(message) => return refusal(StatusCode::BAD_REQUEST, message),
        };
        let id = entry.id.clone();
        let summary = Value::Object(entry.conditions.clone()).to_string();
        let reason = entry.reason.clone();
        match self.runtime.add(entry).await {
            Ok(()) => {
                tracing::info!(%id, conditions = %summary, %reason, "runtime revocation added");
                store.count();
                json_response(StatusCode::CREATED, &json!({ "id": id }))
            }
            Err(error) => store_refusal(&error),
        }
    }

    async fn delete(&self, store: &RevocationStore, id: &str) -> Response<Vec<u8>> {
        let now = clock::unix_now();
        let is_file_entry =
            store
                .current()
                .file
                .entries
                .iter()
                .enumerate()
                .any(|(index, entry)| {
                    entry.until.is_none_or(|until| now < until) && file_entry_id(index) == id
                });
        if is_file_entry {
            return refusal(
                StatusCode::CONFLICT,
                format!(
                    "{id} comes from the revocation file: edit the file to lift it (it is \
                     re-read within seconds)"
                ),
            );
        }
        match self.runtime.remove(id).await {
            Ok(true) => {
                tracing::info!(%id, "runtime revocation deleted");
                store.count();
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .header(http::header::CACHE_CONTROL, "no-store")
                    .body(Vec::new())
                    .unwrap_or_else(|_| Response::new(Vec::new()))
            }
            Ok(false) => refusal(
                StatusCode::NOT_FOUND,
                format!("no revocation has the id {id:?}; `jobgate revoke --list` shows them"),
            ),
            Err(error) => store_refusal(&error),
        }
    }
}

fn store_refusal(error: &RuntimeStoreError) -> Response<Vec<u8>> {
    let status = match error {
        RuntimeStoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        RuntimeStoreError::Full => StatusCode::BAD_REQUEST,
    };
    refusal(status, error.to_string())
}

fn method_not_allowed(session: &mut ServerSession, allow: &'static str) -> Response<Vec<u8>> {
    session.set_keepalive(None);
    let mut response = refusal(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow} here"));
    response
        .headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    response
}

/// Every live entry, file entries first, as `GET /revocations` shows them.
fn list(store: &RevocationStore) -> Response<Vec<u8>> {
    let now = clock::unix_now();
    let snapshot = store.current();
    let mut entries = Vec::new();
    for (index, entry) in snapshot.file.entries.iter().enumerate() {
        if entry.until.is_some_and(|until| now >= until) {
            continue;
        }
        entries.push(json!({
            "id": file_entry_id(index),
            "source": "file",
            "conditions": entry.conditions_json,
            "reason": entry.reason,
            "until": entry.until.map(rfc3339_seconds),
        }));
    }
    for live in snapshot.runtime.live(now) {
        entries.push(json!({
            "id": live.entry.id,
            "source": "runtime",
            "conditions": live.entry.conditions,
            "reason": live.entry.reason,
            "until": live.compiled.until.map(rfc3339_seconds),
        }));
    }
    json_response(StatusCode::OK, &Value::Array(entries))
}

/// The request body, at most [`MAX_ENTRY_BYTES`], within [`BODY_TIMEOUT`].
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Box<Response<Vec<u8>>>> {
    let too_large = || {
        Box::new(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an entry is at most {MAX_ENTRY_BYTES} bytes"),
        ))
    };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_ENTRY_BYTES as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_ENTRY_BYTES {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(error) => {
                    return Err(Box::new(refusal(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {error}"),
                    )));
                }
            }
        }
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(Box::new(refusal(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            )))
        })
}

/// Where this gateway keeps runtime entries: `[revocation] state_file` when set (read now,
/// its entries made live in `store`), else nowhere (`POST` answers 503). Fails when the state
/// file exists but cannot be used: starting without its entries would un-revoke jobs.
pub fn runtime_store(
    config: &crate::config::Config,
    store: &Arc<RevocationStore>,
    cluster: Option<&crate::cluster::Shared>,
) -> Result<Arc<dyn RuntimeRevocations>, String> {
    if let Some(shared) = cluster {
        return Ok(Arc::new(crate::cluster::RedisRevocations::new(
            Arc::clone(&shared.cluster),
            Arc::clone(&shared.revocations),
        )));
    }
    match &config.revocation_state_file {
        Some(path) => Ok(Arc::new(StateFile::open(path.clone(), Arc::clone(store))?)),
        None => Ok(Arc::new(NoRuntimeStore)),
    }
}

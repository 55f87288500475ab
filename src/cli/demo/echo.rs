//! The echo upstream: answers every request with what it received (method, path, the
//! headers jobgate added), so the identity headers can be seen.

use std::collections::BTreeMap;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{Map, Value};

use super::respond::{JsonStyle, json_response};

/// The echo upstream reads at most this much of a request body.
const MAX_ECHO_BODY: usize = 64 * 1024;

/// Answers every request with its method, path and headers as JSON, so the demo shows
/// what jobgate forwarded: the identity headers it set, and that it stripped the token.
pub struct EchoApp;

/// What the echo upstream answers; a struct so that method and path print first.
#[derive(serde::Serialize)]
struct Echo {
    method: String,
    path: String,
    /// Lower-case name → value, or the list of values when the header was repeated.
    headers: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

#[async_trait]
impl ServeHttp for EchoApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.to_string();
        let path = header.uri.path_and_query().map_or_else(
            || header.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &header.headers {
            headers
                .entry(name.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let headers: Map<String, Value> = headers
            .into_iter()
            .map(|(name, mut values)| {
                let value = if values.len() == 1 {
                    Value::String(values.remove(0))
                } else {
                    Value::from(values)
                };
                (name, value)
            })
            .collect();
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    let room = MAX_ECHO_BODY.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if chunk.len() > room {
                        truncated = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    truncated = true;
                    break;
                }
            }
        }
        if truncated {
            // The rest of the body is unread: the connection cannot carry another request.
            session.set_keepalive(None);
        }
        let echo = Echo {
            method,
            path,
            headers,
            body: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
        };
        json_response(StatusCode::OK, &echo, JsonStyle::Pretty)
    }
}

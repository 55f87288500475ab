//! JSON answers of the demo's two small HTTP apps, with the cache headers each kind needs.

use http::{Response, StatusCode};

/// How a JSON response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonStyle {
    /// Compact, and never cached (tokens, errors).
    Private,
    /// Compact and cacheable: discovery and the JWKS. `no-store` there would make jobgate's
    /// key store refetch every second (its floor), so they carry no cache header and the
    /// issuer's `refresh` applies.
    Public,
    /// Indented, for what a person reads in a terminal.
    Pretty,
}

/// A JSON response with its length.
pub(super) fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
    style: JsonStyle,
) -> Response<Vec<u8>> {
    let mut body = if style == JsonStyle::Pretty {
        serde_json::to_vec_pretty(value).unwrap_or_default()
    } else {
        serde_json::to_vec(value).unwrap_or_default()
    };
    body.push(b'\n');
    let mut response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len());
    if style != JsonStyle::Public {
        response = response.header(http::header::CACHE_CONTROL, "no-store");
    }
    response
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

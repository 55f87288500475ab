//! What the gateway's refusals must carry (SPEC §3): the status, the JSON body's `reason`
//! and `route`, the exact `WWW-Authenticate`, `Retry-After` on an outage, and never the
//! token. Each check names `what` was sent, so that a table-driven test says which row
//! failed.

use super::RawResponse;

#[track_caller]
pub fn status(response: &RawResponse, status: u16, what: &str) {
    assert_eq!(
        response.status,
        status,
        "{what}: expected {status}, got {}: {}",
        response.status,
        response.text()
    );
}

/// `status` with a JSON body naming `reason` and `route`.
#[track_caller]
pub fn refusal(response: &RawResponse, status: u16, reason: &str, route: &str, what: &str) {
    assert_eq!(
        response.status,
        status,
        "{what}: expected {status} {reason}, got {}: {}",
        response.status,
        response.text()
    );
    let body = response.json();
    assert_eq!(body["reason"], reason, "{what}: {body}");
    assert_eq!(body["route"], route, "{what}: {body}");
}

/// The exact `WWW-Authenticate` value, or its absence.
#[track_caller]
pub fn challenge(response: &RawResponse, expected: Option<&str>, what: &str) {
    assert_eq!(
        response.header("www-authenticate"),
        expected,
        "{what}: WWW-Authenticate"
    );
}

/// The body does not contain `token`. Short strings ("abc", "a.b") can occur in any body;
/// real tokens cannot, so only those of 16 bytes or more are looked for.
#[track_caller]
pub fn token_not_echoed(response: &RawResponse, token: &str, what: &str) {
    if token.len() >= 16 {
        assert!(
            !response.text().contains(token),
            "{what}: the refusal echoes the token"
        );
    }
}

/// 401 with `Bearer error="invalid_token", error_description="<reason>"` (SPEC §3 step 6),
/// the JSON reason and route, and no echo of the token.
#[track_caller]
pub fn invalid_token(response: &RawResponse, reason: &str, route: &str, token: &str, what: &str) {
    refusal(response, 401, reason, route, what);
    let expected = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
    challenge(response, Some(&expected), what);
    token_not_echoed(response, token, what);
}

/// 503 `keys_unavailable` with a `Retry-After` of whole seconds, and nothing that makes it
/// look like a bad token (SPEC §3 step 7).
#[track_caller]
pub fn keys_unavailable(response: &RawResponse, route: &str, what: &str) {
    refusal(response, 503, "keys_unavailable", route, what);
    let retry_after = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: a keys_unavailable refusal carries Retry-After"));
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {retry_after:?} is not whole seconds"));
    assert!(seconds > 0, "{what}: Retry-After {seconds}");
    assert!(
        !response
            .header("www-authenticate")
            .is_some_and(|value| value.contains("invalid_token")),
        "{what}: an outage looks like a bad token: {:?}",
        response.header("www-authenticate")
    );
}

/// 403 `policy_denied` with the `insufficient_scope` challenge (SPEC §3 step 8).
#[track_caller]
pub fn policy_denied(response: &RawResponse, route: &str, what: &str) {
    refusal(response, 403, "policy_denied", route, what);
    challenge(response, Some(r#"Bearer error="insufficient_scope""#), what);
}

//! Identity headers: what the upstream learns about the job that called (SPEC §4), and the
//! removal of every client-sent header that could pose as one (SPEC §3 step 1).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::auth::claims::{ClaimValue, Claims};
use crate::config::IssuerConfig;
use crate::refusal::Reason;

pub use crate::config::JOB_URL;

/// `{server_url}/{repository}/actions/runs/{run_id}/job/{check_run_id}`, when the token
/// has all three claims.
pub fn job_url(server_url: &str, claims: &Claims) -> Option<String> {
    let repository = claims.text("repository")?;
    let run_id = claims.text("run_id")?;
    let check_run_id = claims.text("check_run_id")?;
    Some(format!(
        "{}/{repository}/actions/runs/{run_id}/job/{check_run_id}",
        server_url.trim_end_matches('/')
    ))
}

/// A claim's value as one header value: scalars as text, lists joined with `, `.
/// `None` when the claim is absent or not representable (an object).
fn claim_text(claims: &Claims, claim: &str) -> Option<String> {
    match claims.get(claim)? {
        ClaimValue::Text(text) => Some(text.to_string()),
        ClaimValue::List(items) => Some(items.join(", ")),
        ClaimValue::Other => None,
    }
}

/// Only visible ASCII and space may be forwarded: anything else (TAB, CR/LF, other
/// controls, non-ASCII) could split or smuggle headers, or be read differently upstream.
/// Takes the text by value: the header value keeps its buffer instead of a copy.
fn forwardable(value: String) -> Result<HeaderValue, Reason> {
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(Reason::UnforwardableClaim);
    }
    HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| Reason::UnforwardableClaim)
}

const ISSUER_HEADER: HeaderName = HeaderName::from_static("x-jobgate-issuer");
const SUBJECT_HEADER: HeaderName = HeaderName::from_static("x-jobgate-subject");
/// Set on every authenticated request; its value is built once per route.
pub const ROUTE_HEADER: HeaderName = HeaderName::from_static("x-jobgate-route");
/// [`ROUTE_HEADER`] as wire bytes, for the per-request insert.
pub const ROUTE_HEADER_WIRE: Bytes = Bytes::from_static(b"x-jobgate-route");

/// Header name/value pairs, ready to set on the upstream request. Names are the bytes
/// Pingora writes on the wire and values share theirs, so setting them per request costs
/// reference counts, not copies (a `HeaderName` would be copied into a wire form on every
/// insert).
pub type IdentityHeaders = Box<[(Bytes, HeaderValue)]>;

/// [`token_headers`] in the form kept per verified token ([`IdentityHeaders`]).
pub fn wire_headers(headers: Vec<(HeaderName, HeaderValue)>) -> IdentityHeaders {
    headers
        .into_iter()
        .map(|(name, value)| (Bytes::copy_from_slice(name.as_str().as_bytes()), value))
        .collect()
}

/// The identity headers for a verified token on a route: the issuer's table (absent
/// claims set nothing) and, always, `X-Jobgate-Issuer`, `-Subject` and `-Route`.
/// A value that cannot be a header value refuses the request (`unforwardable_claim`).
pub fn identity_headers(
    issuer: &IssuerConfig,
    claims: &Claims,
    route: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, Reason> {
    let mut headers = token_headers(issuer, claims)?;
    headers.push((ROUTE_HEADER, forwardable(route.to_owned())?));
    Ok(headers)
}

/// What [`identity_headers`] gives that depends on the token alone (everything but the
/// route header), so that it can be built once per verified token.
pub fn token_headers(
    issuer: &IssuerConfig,
    claims: &Claims,
) -> Result<Vec<(HeaderName, HeaderValue)>, Reason> {
    let mut headers = Vec::with_capacity(issuer.headers.len() + 3);
    for (name, claim) in &issuer.headers {
        let value = if claim == JOB_URL {
            job_url(&issuer.server_url, claims)
        } else {
            claim_text(claims, claim)
        };
        if let Some(value) = value {
            headers.push((name.clone(), forwardable(value)?));
        }
    }
    for (name, claim) in [(ISSUER_HEADER, "iss"), (SUBJECT_HEADER, "sub")] {
        if let Some(value) = claim_text(claims, claim) {
            headers.push((name, forwardable(value)?));
        }
    }
    Ok(headers)
}

/// The `X-Jobgate-Route` value of a route, built once per config load.
pub fn route_header_value(route: &str) -> Result<HeaderValue, Reason> {
    forwardable(route.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IssuerKind;
    use std::time::Duration;

    fn issuer(headers: &[(&str, &str)]) -> IssuerConfig {
        IssuerConfig {
            name: "github".into(),
            url: "https://token.actions.githubusercontent.com".into(),
            jwks_url: None,
            kind: IssuerKind::Github,
            server_url: "https://github.example/".into(),
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            leeway: Duration::from_secs(60),
            refresh: Duration::from_secs(600),
            min_refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(86400),
            max_token_age: None,
            headers: headers
                .iter()
                .map(|(h, c)| {
                    (
                        HeaderName::from_bytes(h.as_bytes()).expect("name"),
                        c.to_string(),
                    )
                })
                .collect(),
        }
    }

    fn claims(json: serde_json::Value) -> Claims {
        Claims::from_json_object(json.as_object().expect("object"))
    }

    #[test]
    fn table_claims_derived_job_url_and_jobgate_headers() {
        let issuer = issuer(&[
            ("x-github-repository", "repository"),
            ("x-github-run-attempt", "run_attempt"),
            ("x-github-environment", "environment"),
            ("x-github-job-url", "job_url"),
        ]);
        let claims = claims(serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com", "sub": "repo:acme/app:ref:refs/heads/main",
            "repository": "acme/app", "run_id": "42", "run_attempt": 1, "check_run_id": "7"
        }));
        let headers = identity_headers(&issuer, &claims, "deploy").expect("forwardable");
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.to_str().expect("ascii").to_string())
        };
        assert_eq!(find("x-github-repository").as_deref(), Some("acme/app"));
        assert_eq!(find("x-github-run-attempt").as_deref(), Some("1"));
        assert_eq!(
            find("x-github-environment"),
            None,
            "absent claim sets no header"
        );
        assert_eq!(
            find("x-github-job-url").as_deref(),
            Some("https://github.example/acme/app/actions/runs/42/job/7")
        );
        assert_eq!(find("x-jobgate-route").as_deref(), Some("deploy"));
        assert_eq!(
            find("x-jobgate-subject").as_deref(),
            Some("repo:acme/app:ref:refs/heads/main")
        );
    }

    #[test]
    fn values_that_are_not_visible_ascii_are_refused() {
        let issuer = issuer(&[("x-github-ref", "ref")]);
        for bad in ["a\rb", "a\nb", "tab\t", "caf\u{e9}", "\u{0}", "\u{7f}"] {
            let claims = claims(serde_json::json!({ "ref": bad }));
            assert_eq!(
                identity_headers(&issuer, &claims, "r").err(),
                Some(Reason::UnforwardableClaim),
                "{bad:?}"
            );
        }
        let fine = claims(serde_json::json!({ "ref": "refs/heads/a b~!" }));
        assert!(identity_headers(&issuer, &fine, "r").is_ok());
    }
}

//! Identity headers: what the upstream learns about the job that called (SPEC §4), and the
//! removal of every client-sent header that could pose as one (SPEC §3 step 1).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::auth::claims::{ClaimValue, Claims, ClaimsDraft, Span};
use crate::config::IssuerConfig;
use crate::refusal::Reason;

pub use crate::config::JOB_URL;

/// `{server_url}/{repository}/actions/runs/{run_id}/job/{check_run_id}`, when the token
/// has all three claims.
pub fn job_url<B: AsRef<[u8]>>(server_url: &str, claims: &Claims<B>) -> Option<String> {
    let repository = claims.text("repository")?;
    let run_id = claims.text("run_id")?;
    let check_run_id = claims.text("check_run_id")?;
    Some(format!(
        "{}/{repository}/actions/runs/{run_id}/job/{check_run_id}",
        server_url.trim_end_matches('/')
    ))
}

/// A claim's value as one header value: a scalar where it already lies in the claims'
/// buffer, a list as its items joined with `, `. `None` when the claim is absent or not
/// representable (an object).
fn claim_value<B: AsRef<[u8]>>(claims: &Claims<B>, claim: &str) -> Option<Value> {
    if let Some(span) = claims.text_span(claim) {
        return Some(Value::Span(span));
    }
    match claims.get(claim)? {
        ClaimValue::List(items) => {
            Some(Value::Derived(items.iter().collect::<Vec<_>>().join(", ")))
        }
        ClaimValue::Text(_) | ClaimValue::Other => None,
    }
}

/// Where a header value comes from while it is being built.
enum Value {
    Span(Span),
    /// Not one claim's text (`job_url`, a joined list): appended to the claims' buffer.
    Derived(String),
}

/// Only visible ASCII and space may be forwarded: anything else (TAB, CR/LF, other
/// controls, non-ASCII) could split or smuggle headers, or be read differently upstream.
fn forwardable(value: &[u8]) -> Result<(), Reason> {
    if value.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Reason::UnforwardableClaim)
    }
}

const ISSUER_HEADER: HeaderName = HeaderName::from_static("x-jobgate-issuer");
const SUBJECT_HEADER: HeaderName = HeaderName::from_static("x-jobgate-subject");
/// Set on every authenticated request; its value is built once per route.
pub const ROUTE_HEADER: HeaderName = HeaderName::from_static("x-jobgate-route");
/// [`ROUTE_HEADER`] as wire bytes, for the per-request insert.
pub const ROUTE_HEADER_WIRE: Bytes = Bytes::from_static(b"x-jobgate-route");

/// The identity header names of one issuer, as the bytes Pingora writes on the wire: its
/// table's, then `X-Jobgate-Issuer` and `-Subject`. Built once per issuer and shared by its
/// tokens, so that setting a header per request costs a reference count (a `HeaderName`
/// would be copied into a wire form on every insert).
pub fn wire_names(issuer: &IssuerConfig) -> Arc<[Bytes]> {
    issuer
        .headers
        .iter()
        .map(|(name, _)| name)
        .chain([&ISSUER_HEADER, &SUBJECT_HEADER])
        .map(|name| Bytes::copy_from_slice(name.as_str().as_bytes()))
        .collect()
}

/// One header of [`TokenHeaders`]: which name, and where its value is in the claims'
/// buffer. 8 bytes: a header value over 64 KiB is refused when built.
#[derive(Debug, Clone, Copy)]
struct HeaderSlot {
    value_start: u32,
    value_len: u16,
    name: u16,
}

/// The identity headers a token gives (SPEC §4), except `X-Jobgate-Route`: built once per
/// verified token as positions in its claims' buffer (derived values are appended to it),
/// checked forwardable then, and turned into header values per request for a reference
/// count each.
#[derive(Debug, Clone)]
pub struct TokenHeaders {
    names: Arc<[Bytes]>,
    slots: Box<[HeaderSlot]>,
}

impl TokenHeaders {
    /// Name and value of each header, in table order, then issuer and subject. `claims`
    /// are the ones these headers were built with.
    pub fn iter<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> impl Iterator<Item = (&'a Bytes, HeaderValue)> + 'a {
        self.slots.iter().filter_map(move |slot| {
            let span = Span::of(slot.value_start as usize, usize::from(slot.value_len));
            // Checked by `forwardable` when built, so this does not fail.
            let value = HeaderValue::from_maybe_shared(claims.shared(span)).ok()?;
            Some((self.names.get(usize::from(slot.name))?, value))
        })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Heap bytes held by this token's headers (the names are the issuer's, the values
    /// the claims').
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }
}

/// [`TokenHeaders`] for a token of `issuer` (whose [`wire_names`] are `names`): the
/// issuer's table (absent claims set nothing), then `X-Jobgate-Issuer` and `-Subject`.
/// Derived values are appended to `claims`. A value that cannot be a header value refuses
/// the request (`unforwardable_claim`).
pub fn token_headers(
    issuer: &IssuerConfig,
    claims: &mut ClaimsDraft,
    names: &Arc<[Bytes]>,
) -> Result<TokenHeaders, Reason> {
    let mut slots = Vec::with_capacity(names.len());
    let claim_names = issuer
        .headers
        .iter()
        .map(|(_, claim)| claim.as_str())
        .chain(["iss", "sub"]);
    for (index, claim) in claim_names.enumerate() {
        // `iss` and `sub` (the two last) are never `job_url`.
        let value = if claim == JOB_URL {
            job_url(&issuer.server_url, claims).map(Value::Derived)
        } else {
            claim_value(claims, claim)
        };
        let span = match value {
            None => continue,
            Some(Value::Span(span)) => span,
            Some(Value::Derived(text)) => claims.push(text.as_bytes()),
        };
        let bytes = claims.bytes(span);
        forwardable(bytes)?;
        let (Ok(name), Ok(value_len), Some(value_start)) = (
            u16::try_from(index),
            u16::try_from(bytes.len()),
            span.start(),
        ) else {
            return Err(Reason::UnforwardableClaim);
        };
        slots.push(HeaderSlot {
            value_start,
            value_len,
            name,
        });
    }
    Ok(TokenHeaders {
        names: Arc::clone(names),
        slots: slots.into_boxed_slice(),
    })
}

/// The identity headers for a verified token on a route, as a list (`explain`, tests): the
/// same as [`token_headers`], then `X-Jobgate-Route`.
pub fn identity_headers(
    issuer: &IssuerConfig,
    claims: &Claims,
    route: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, Reason> {
    let mut draft = claims.to_draft();
    let headers = token_headers(issuer, &mut draft, &wire_names(issuer))?;
    let claims = draft.finish();
    let mut list: Vec<(HeaderName, HeaderValue)> = headers
        .iter(&claims)
        .filter_map(|(name, value)| Some((HeaderName::from_bytes(name).ok()?, value)))
        .collect();
    list.push((ROUTE_HEADER, route_header_value(route)?));
    Ok(list)
}

/// The `X-Jobgate-Route` value of a route, built once per config load.
pub fn route_header_value(route: &str) -> Result<HeaderValue, Reason> {
    forwardable(route.as_bytes())?;
    HeaderValue::from_maybe_shared(Bytes::from(route.to_owned()))
        .map_err(|_| Reason::UnforwardableClaim)
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

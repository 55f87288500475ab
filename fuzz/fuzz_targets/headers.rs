//! Identity headers from arbitrary claim values: `identity_headers` never panics, never
//! produces a value with a byte outside visible ASCII and space, refuses
//! (`unforwardable_claim`) exactly when a value it would forward has such a byte, and every
//! header it sets is one the spoof filter strips from client requests. The filter itself is
//! checked on arbitrary names: any case / `_` spelling of a reserved name is reserved.
#![no_main]

use arbitrary::Arbitrary;
use jobgate::auth::claims::Claims;
use jobgate::auth::identity::{JOB_URL, identity_headers, job_url};
use jobgate::proxy::spoof::SpoofFilter;
use jobgate::refusal::Reason;
use jobgate_fuzz::{forwardable, issuer};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// Claims the header table reads (the GitHub defaults, the config's custom ones and the
/// job URL parts).
const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "ref",
    "sha",
    "actor",
    "event_name",
    "environment",
    "workflow_ref",
    "job_workflow_ref",
    "run_id",
    "run_attempt",
    "check_run_id",
    "runner_environment",
];

#[derive(Arbitrary, Debug)]
enum Claim {
    Text(String),
    Ascii(Vec<u8>),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Null,
    Object(String),
}

impl Claim {
    fn to_value(&self) -> Value {
        match self {
            Claim::Text(text) => json!(text),
            Claim::Ascii(bytes) => json!(
                bytes
                    .iter()
                    .map(|b| char::from(b & 0x7f))
                    .collect::<String>()
            ),
            Claim::Int(n) => json!(n),
            Claim::Float(n) => json!(n),
            Claim::Bool(b) => json!(b),
            Claim::List(items) => json!(items),
            Claim::Null => Value::Null,
            Claim::Object(text) => json!({ "x": text }),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Case {
    claims: Vec<(u8, Claim)>,
    route: String,
    /// A header name a client might send.
    client_header: String,
}

/// `Bearer`-free spellings of a header name a client could use for a reserved one.
fn spellings(name: &str) -> [String; 3] {
    [
        name.to_ascii_uppercase(),
        name.replace('-', "_"),
        name.to_ascii_uppercase().replace('-', "_"),
    ]
}

/// Whether the issuer's header table names the derived job URL (a custom table replaces
/// the GitHub defaults, so it may not).
fn forwards_job_url(issuer: &jobgate::config::IssuerConfig) -> bool {
    issuer.headers.iter().any(|(_, claim)| claim == JOB_URL)
}

fuzz_target!(|case: Case| {
    let issuer = issuer();
    let mut object = serde_json::Map::new();
    for (index, claim) in case.claims.iter().take(24) {
        let name = CLAIMS[usize::from(*index) % CLAIMS.len()];
        object.insert(name.to_owned(), claim.to_value());
    }
    let claims = Claims::from_json_object(&object);
    let filter = SpoofFilter::new([issuer.as_ref()]);
    match identity_headers(issuer, &claims, &case.route) {
        Ok(headers) => {
            for (name, value) in &headers {
                assert!(
                    forwardable(value.as_bytes()),
                    "header {name} value {value:?} has a byte outside visible ASCII"
                );
                assert!(
                    filter.is_reserved(name.as_str()),
                    "{name} not stripped from clients"
                );
                for spelling in spellings(name.as_str()) {
                    assert!(filter.is_reserved(&spelling), "{spelling} not stripped");
                }
            }
            let route = headers
                .iter()
                .find(|(name, _)| name == "x-jobgate-route")
                .map(|(_, value)| value.as_bytes());
            assert_eq!(route, Some(case.route.as_bytes()), "route header");
            if forwards_job_url(issuer)
                && let Some(url) = job_url(&issuer.server_url, &claims)
            {
                assert!(
                    forwardable(url.as_bytes()),
                    "job URL {url:?} not forwardable"
                );
            }
        }
        Err(reason) => {
            assert_eq!(reason, Reason::UnforwardableClaim);
            // Only because some forwarded value really had a bad byte.
            let texts = claims.iter().filter_map(|(name, value)| {
                let read = issuer.headers.iter().any(|(_, claim)| claim == name)
                    || name == "iss"
                    || name == "sub";
                read.then_some(value)
            });
            let bad_claim = texts.into_iter().any(|value| match value {
                jobgate::auth::claims::ClaimValue::Text(text) => !forwardable(text.as_bytes()),
                jobgate::auth::claims::ClaimValue::List(items) => {
                    items.iter().any(|item| !forwardable(item.as_bytes()))
                }
                jobgate::auth::claims::ClaimValue::Other => false,
            });
            let bad_job_url = forwards_job_url(issuer)
                && job_url(&issuer.server_url, &claims)
                    .is_some_and(|url| !forwardable(url.as_bytes()));
            assert!(
                bad_claim || bad_job_url || !forwardable(case.route.as_bytes()),
                "refused though every value is forwardable"
            );
        }
    }
    // The filter on a name a client chose: reserved prefixes in any spelling.
    let name = case.client_header.as_str();
    let lower = name.to_ascii_lowercase().replace('_', "-");
    if lower.starts_with("x-github-") || lower.starts_with("x-jobgate-") {
        assert!(filter.is_reserved(name), "{name:?} not reserved");
    }
    if issuer
        .headers
        .iter()
        .any(|(header, _)| header.as_str() == lower)
    {
        assert!(filter.is_reserved(name), "{name:?} not reserved");
    }
});

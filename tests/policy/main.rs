//! The real `jobgate` binary with a real test issuer and a real upstream on 127.0.0.1:
//! route rules (SPEC §2 condition values, §3 step 8), refusal shapes (HTTP and gRPC),
//! identity headers (§4), revocation and the audit log (§6).
//!
//! One test binary; each theme is a module. Here: the world every test starts from (a
//! GitHub-kind issuer named `gh`, one echo upstream) and what the themes share.

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod enforcement;
mod headers;
mod rules;

use std::time::Duration;

use serde_json::Value;
use support::RawResponse;
use support::expect;
use support::issuer::TestIssuer;
use support::world::{World, WorldBuilder};

/// The audience every authenticated route of this binary asks for.
const AUD: &str = "https://api.internal.example";

/// The rule most routes here have: the token's repository belongs to `acme`.
const ACME: &str = "[[route.allow]]\nrepository_owner = \"acme\"\n";

/// A GitHub-kind issuer named `gh` with `AUD` and the echo upstream `api`; routes to add.
fn github() -> WorldBuilder {
    World::builder()
        .issuer(TestIssuer::start())
        .issuer_name("gh")
        .issuer_keys("kind = \"github\"")
        .audience(AUD)
        .upstream("api")
}

/// The keys of an authenticated route on the `gh` issuer to the echo upstream; `settings`
/// are extra route keys, `rules` the `[[route.allow]]`/`[[route.deny]]` tables.
fn route(name: &str, settings: &str, rules: &str) -> String {
    format!(
        "name = \"{name}\"\nupstream = \"{{upstream}}\"\nissuer = \"{{issuer}}\"\naudience = \"{{audience}}\"\n{settings}\n{rules}\n"
    )
}

/// A world with one route `api` on `/v1` whose rules are `rules`.
fn with_rules(rules: &str) -> World {
    github()
        .route(&route("api", "path_prefix = \"/v1\"", rules))
        .start()
}

/// `GET /v1/items` with `Bearer token`.
fn call(world: &World, token: &str) -> RawResponse {
    world.get("/v1/items").bearer(token).send()
}

#[track_caller]
fn assert_allowed(response: &RawResponse, what: &str) {
    assert_eq!(
        response.status,
        200,
        "{what}: expected the upstream's 200, got {} {}",
        response.status,
        response.text()
    );
    assert!(
        response.json()["upstream"].is_string(),
        "{what}: the answer did not come from the echo upstream: {}",
        response.text()
    );
}

#[track_caller]
fn assert_policy_denied(response: &RawResponse, route: &str, what: &str) {
    expect::policy_denied(response, route, what);
}

/// Waits (bounded) until the audit file holds `count` lines, then a little longer to catch
/// a line too many, and returns them: exactly `count` JSON objects.
#[track_caller]
fn exact_audit_lines(world: &World, count: usize) -> Vec<Value> {
    world.wait_audit_lines(count);
    std::thread::sleep(Duration::from_millis(300));
    let text = world.audit_text();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("audit line is not JSON ({error}): {line}"))
        })
        .collect();
    assert_eq!(lines.len(), count, "one line per request: {text}");
    for line in &lines {
        assert!(line.is_object(), "{line}");
    }
    lines
}

//! Faults around the gateway (issue "[hardening]"): a JWKS endpoint that is slow, failing,
//! garbage, huge or not speaking TLS; upstreams that refuse, hang or close mid-response;
//! slow clients, 10 000 connections, and request headers at and above the limits. Real
//! processes on 127.0.0.1 only.
//!
//! For each fault: the gateway answers with the right status, keeps serving other requests,
//! and does not grow without bound (resident memory and open file descriptors of the
//! `jobgate` process are read from /proc). Figures worth a look (RSS growth, latency,
//! bytes read) are printed on stderr; run with `--nocapture` to see them.
//!
//! Every loop, sleep and read here is bounded.
//!
//! One test binary; each kind of fault is a module. Here: config snippets and the checks
//! the kinds share; `raw` has the misbehaving TCP peers.

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod jwks;
mod limits;
mod raw;
mod upstreams;

use std::time::{Duration, Instant};

use serde_json::json;
use support::issuer::{Signer, TestIssuer, TestKey, github_claims, mint_with_header};
use support::world::{World, WorldBuilder, any_token_route};
use support::{RawResponse, expect, wait_until};

const AUD: &str = "https://api.faults.example";

/// jobgate's request-head limit (`proxy::conn::MAX_HEAD`, below Pingora's 1 MiB): once more
/// than this was read without the end of the head, the request is answered 431 and the
/// connection closed.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Pingora 0.9's limit on the number of request header lines (`MAX_HEADERS`).
const PINGORA_MAX_HEADERS: usize = 256;
/// jobgate's fetch limits (`keys::FetchLimits::default`).
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_MAX_BODY: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Config.
// ---------------------------------------------------------------------------------------

/// An `[[issuer]]` for a server that is not a test issuer; `extra` adds keys (`jwks_url`, …).
fn issuer_section(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[issuer]]\nname = \"{name}\"\nurl = \"{url}\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
         min_refetch_interval = \"1s\"\n{extra}\n"
    )
}

/// The keys of a public route (no token needed); `extra` adds keys (`timeout`, …).
fn public_route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\nauth = false\n{extra}\n"
    )
}

/// A world with the public route `public` (`/public`) to the echo upstream `echo`, and
/// [`AUD`] for authenticated routes; add routes, then start.
fn with_public_route() -> WorldBuilder {
    World::builder()
        .audience(AUD)
        .upstream("echo")
        .route(&public_route("public", "/public", "{upstream}", ""))
}

/// `issuer` (named `test`) behind the authenticated route `api` (`/api`), and the public
/// route `public` (`/public`), both to the echo upstream; not waiting for the issuer's keys.
fn api_and_public(issuer: TestIssuer) -> World {
    with_public_route()
        .issuer(issuer)
        .route(&any_token_route("api", "/api", "{issuer}"))
        .start_listening()
}

// ---------------------------------------------------------------------------------------
// Observing the gateway.
// ---------------------------------------------------------------------------------------

/// The soft "Max open files" limit from `/proc/<who>/limits` (`who` a pid or `self`).
fn max_open_files(who: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{who}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits until `jobgate_jwks_refresh_total{issuer,result="error"}` reaches `count`.
#[track_caller]
fn wait_for_fetch_errors(world: &World, issuer: &str, count: f64, limit: Duration) {
    let labels = [("issuer", issuer), ("result", "error")];
    let errors = || world.metric_or_zero("jobgate_jwks_refresh_total", &labels);
    let reached = wait_until(limit, || errors() >= count);
    assert!(
        reached,
        "jobgate_jwks_refresh_total{{issuer=\"{issuer}\",result=\"error\"}} is {} after {limit:?}",
        errors()
    );
}

/// `GET path` on the public route answers 200 from the echo upstream, within `limit`.
#[track_caller]
fn assert_public_ok(world: &World, path: &str, limit: Duration) {
    let started = Instant::now();
    let response = world.get(path).send();
    let took = started.elapsed();
    expect::status(&response, 200, &format!("public {path}"));
    assert!(took < limit, "public {path} took {took:?}");
}

#[track_caller]
fn assert_refusal(response: &RawResponse, status: u16, reason: &str, route: &str) {
    expect::refusal(response, status, reason, route, route);
}

/// 503 `keys_unavailable` with `Retry-After`, never an `invalid_token` challenge.
#[track_caller]
fn assert_keys_unavailable(response: &RawResponse, route: &str) {
    expect::keys_unavailable(response, route, route);
}

/// `GET target` with a bearer token.
fn call(world: &World, target: &str, token: &str) -> RawResponse {
    world.get(target).bearer(token).send()
}

/// A well-formed token claiming `issuer_url`, signed by a key nobody publishes: enough to
/// reach the key lookup.
fn token_for(issuer_url: &str) -> String {
    let key = TestKey::rsa("k1");
    let claims = github_claims(issuer_url, AUD, &json!({}));
    mint_with_header(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
        &claims,
        Signer::Key(&key),
    )
}

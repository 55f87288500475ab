//! What the decision after the signature costs: a 10-condition rule over a 30-claim token,
//! route lookup among 1 000 routes, identity headers, and the whole `authorize` step for a
//! cached token (header parse, cache hit, audience/time, revocation, rules, headers).
//!
//! `cargo bench --bench policy -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/issuer.rs"]
mod issuer;

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use jobgate::auth::claims::Claims;
use jobgate::auth::identity::identity_headers;
use jobgate::auth::keys::KeyStore;
use jobgate::auth::keys::jwks::parse_jwks;
use jobgate::auth::verify::Authenticator;
use jobgate::auth::verify::token_cache::TokenCache;
use jobgate::policy::evaluate;
use jobgate::policy::revocation::RevocationStore;
use jobgate::proxy::authorize::authorize;
use jobgate::proxy::routing::RouteTable;
use jobgate::proxy::state::GatewayState;
use serde_json::json;

const AUD: &str = "https://deploy.internal.example";
const ISS: &str = "http://127.0.0.1:9";

/// A config with `routes` authenticated routes; route `deploy` carries a 10-condition rule.
fn config_text(routes: usize) -> String {
    let mut text = format!(
        "[audit]\noutput = \"off\"\n\n[[issuer]]\nname = \"gh\"\nurl = \"{ISS}\"\nkind = \"github\"\n\n\
         [[route]]\nname = \"deploy\"\nhost = \"deploy.internal.example\"\npath_prefix = \"/v1/deploy\"\n\
         upstream = \"http://127.0.0.1:9\"\naudience = \"{AUD}\"\n\
         [[route.deny]]\nrunner_environment = \"self-hosted\"\n\
         [[route.allow]]\nrepository_owner = \"acme\"\nrepository_owner_id = \"1234567\"\n\
         repository = \"acme/*\"\nrepository_id = \"89012345\"\n\
         job_workflow_ref = \"acme/app/.github/workflows/*.yml@refs/heads/main\"\n\
         ref = [\"refs/heads/main\", \"refs/tags/v*\"]\nenvironment = \"production\"\n\
         event_name = {{ regex = \"push|workflow_dispatch\" }}\nrun_attempt = [1, 2, 3]\nref_type = \"branch\"\n\n"
    );
    for index in 0..routes.saturating_sub(1) {
        text.push_str(&format!(
            "[[route]]\nname = \"svc{index}\"\nhost = \"svc{}.internal.example\"\npath_prefix = \"/api/v{}/svc{index}\"\n\
             upstream = \"http://127.0.0.1:9\"\naudience = \"aud{index}\"\n[[route.allow]]\nrepository_owner = \"acme\"\n\n",
            index % 50,
            index % 7
        ));
    }
    text
}

fn claims() -> serde_json::Value {
    issuer::github_claims(
        ISS,
        AUD,
        &json!({
            "repository_owner": "acme", "repository_owner_id": "1234567", "repository": "acme/app",
            "repository_id": "89012345", "ref": "refs/heads/main", "ref_type": "branch",
            "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
            "environment": "production", "event_name": "push", "run_attempt": "1",
            "runner_environment": "github-hosted",
        }),
    )
}

fn poll_once<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a cached token never waits"),
    }
}

fn benches(c: &mut Criterion) {
    let config = jobgate::config::parse(&config_text(1_000), Path::new("bench.toml"))
        .expect("bench config is valid");
    assert_eq!(config.routes.len(), 1_000);
    let claim_json = claims();
    let claim_set = Claims::from_json_object(claim_json.as_object().expect("object"));
    let route = &config.routes[0];
    let auth = route.auth.as_ref().expect("authenticated route");
    assert!(evaluate(auth, &claim_set).is_allowed());

    c.bench_function("rule_10_conditions_30_claims", |b| {
        b.iter(|| black_box(evaluate(black_box(auth), black_box(&claim_set))))
    });

    let table = RouteTable::new(&config.routes);
    c.bench_function("route_lookup_1000_routes", |b| {
        b.iter(|| {
            black_box(table.lookup(
                black_box(Some("svc17.internal.example:443")),
                black_box("/api/v3/svc367/items/42"),
                &Method::GET,
            ))
        })
    });

    let issuer_config = Arc::clone(&config.issuers[0]);
    c.bench_function("identity_headers_github", |b| {
        b.iter(|| {
            black_box(identity_headers(
                &issuer_config,
                black_box(&claim_set),
                "deploy",
            ))
        })
    });

    // The whole authorize step, with a key store that serves a fixed key set.
    let key = issuer::TestKey::rsa("bench");
    let keys = parse_jwks(
        json!({"keys": [key.jwk()]}).to_string().as_bytes(),
        "gh",
        &issuer_config.algorithms,
    )
    .expect("key set");
    let token = issuer::mint_with_header(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "bench"}),
        &claim_json,
        issuer::Signer::Key(&key),
    );
    let authenticator = Authenticator::from_stores(
        vec![Arc::new(KeyStore::with_keys(
            Arc::clone(&issuer_config),
            keys,
        ))],
        Arc::new(TokenCache::new(1_000)),
    );
    let mut state = GatewayState::build(config, None, Arc::new(RevocationStore::default()))
        .expect("state builds");
    state.authenticator = Arc::new(authenticator);
    let route = &state.config.routes[0];
    let auth = route.auth.as_ref().expect("authenticated route");
    let header = format!("Bearer {token}");
    let now = issuer::now();
    let decide = || poll_once(authorize(&state, auth, [header.as_bytes()], now));
    assert!(decide().is_ok(), "the bench token must be allowed");
    c.bench_function("authorize_cached_token", |b| b.iter(|| black_box(decide())));
}

criterion_group!(policy, benches);
criterion_main!(policy);

//! The demo without the binary: its config at default and moved ports, the token endpoint
//! in every shape a script uses, the claims, and that each printed example gives its status.

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::guide::*;
use super::issuer::*;
use super::job::*;
use super::layout::*;
use crate::auth::verify::{check_request, parse_header, verify_with_key};
use crate::config::{self, Config};
use crate::policy::{PolicyDecision, evaluate};
use crate::refusal::Reason;

/// RSA key generation is slow in a debug build: the tests share one issuer.
fn issuer() -> &'static DemoIssuer {
    static ISSUER: OnceLock<DemoIssuer> = OnceLock::new();
    ISSUER
        .get_or_init(|| DemoIssuer::generate(DEFAULT_PORTS.issuer_url()).expect("demo issuer key"))
}

fn embedded_config(ports: DemoPorts) -> Config {
    let text = effective_config(EMBEDDED_CONFIG, ports);
    config::parse(&text, Path::new(CONFIG_PATH)).unwrap_or_else(|error| panic!("{error}"))
}

fn request(target: &str) -> TokenRequest {
    parse_token_target(target).expect("a token endpoint target")
}

#[test]
fn the_shipped_file_and_the_built_in_copy_are_the_same() {
    let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .expect("config/demo.toml");
    assert_eq!(on_disk, EMBEDDED_CONFIG);
}

#[test]
fn demo_config_validates_without_warnings_at_default_and_moved_ports() {
    let config = embedded_config(DEFAULT_PORTS);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    check_layout(&config, DEFAULT_PORTS).expect("layout");
    assert_eq!(config.issuers.len(), 1);
    assert_eq!(config.issuers[0].kind, config::IssuerKind::Github);
    // Effective config at other ports: validated again, and everything moved.
    let moved = DemoPorts {
        proxy: 18080,
        admin: 19090,
        issuer: 18090,
        upstream: 18081,
    };
    let config = embedded_config(moved);
    check_layout(&config, moved).expect("layout at moved ports");
    assert_eq!(config.issuers[0].url, "http://127.0.0.1:18090");
    for route in &config.routes {
        assert!(
            route
                .upstreams
                .iter()
                .all(|upstream| upstream.port == 18081),
            "{}",
            route.name
        );
    }
    // The defaults no longer fit the moved config.
    assert!(check_layout(&config, DEFAULT_PORTS).is_err());
}

#[test]
fn port_substitution_is_one_pass_and_exact() {
    let swapped = DemoPorts {
        proxy: 8081,
        upstream: 8080,
        ..DEFAULT_PORTS
    };
    let text = "a = \"127.0.0.1:8080\"\nb = \"http://127.0.0.1:8081/x\"\nc = \"127.0.0.1:80800\"\nd = \"10.0.0.1:8080\"\ne = \"127.0.0.1:\"";
    assert_eq!(
        effective_config(text, swapped),
        "a = \"127.0.0.1:8081\"\nb = \"http://127.0.0.1:8080/x\"\nc = \"127.0.0.1:80800\"\nd = \"10.0.0.1:8080\"\ne = \"127.0.0.1:\""
    );
    assert_eq!(effective_config(text, DEFAULT_PORTS), text);
}

#[test]
fn ports_must_differ_and_be_free() {
    let same = DemoPorts {
        admin: 8080,
        ..DEFAULT_PORTS
    };
    let error = same.check_distinct().expect_err("duplicate ports");
    assert!(
        error.contains("--port and --admin-port are both 8080"),
        "{error}"
    );
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let ports = DemoPorts {
        proxy: port,
        admin: 1,
        issuer: 2,
        upstream: 3,
    };
    let error = ports.check_free().expect_err("port in use");
    assert!(
        error.starts_with(&format!("port {port} is in use; pass --port ")),
        "{error}"
    );
}

#[test]
fn token_targets_in_every_shape_a_script_makes() {
    assert_eq!(request("/token"), TokenRequest::default());
    let plain = request("/token?audience=jobgate-demo&repository=evil%2Fapp&ref=refs/heads/x");
    assert_eq!(plain.audience.as_deref(), Some("jobgate-demo"));
    assert_eq!(
        plain.overrides,
        [
            ("repository".to_string(), "evil/app".to_string()),
            ("ref".to_string(), "refs/heads/x".to_string())
        ]
    );
    // "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…" with and without a query in the URL.
    assert_eq!(request("/token&audience=a"), request("/token?audience=a"));
    assert_eq!(request("/token?&audience=a"), request("/token?audience=a"));
    let github = request("/token?api-version=2.0&audience=a");
    assert_eq!(github.audience.as_deref(), Some("a"));
    assert!(github.overrides.is_empty());
    assert!(parse_token_target("/tokens").is_none());
    assert!(parse_token_target("/").is_none());
}

#[test]
fn default_claims_are_a_github_job_of_acme_app() {
    let claims = job_claims("http://127.0.0.1:8090", &TokenRequest::default(), 1_000);
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    assert_eq!(text("iss").as_deref(), Some("http://127.0.0.1:8090"));
    assert_eq!(
        text("sub").as_deref(),
        Some("repo:acme/app:environment:production")
    );
    assert_eq!(text("aud").as_deref(), Some("https://github.com/acme"));
    assert_eq!(text("repository_owner").as_deref(), Some("acme"));
    assert_eq!(
        text("repository_owner_id").as_deref(),
        Some(DEFAULT_OWNER_ID)
    );
    assert_eq!(text("run_attempt").as_deref(), Some("1"));
    assert_eq!(text("runner_environment").as_deref(), Some("github-hosted"));
    assert_eq!(text("ref_type").as_deref(), Some("branch"));
    assert_eq!(claims.get("iat"), Some(&Value::from(1_000)));
    assert_eq!(claims.get("exp"), Some(&Value::from(1_300)));
    for name in claims.keys() {
        assert!(
            GITHUB_CLAIMS.split_whitespace().any(|claim| claim == name),
            "{name}"
        );
    }
    let jti = text("jti").unwrap_or_default();
    assert_eq!(jti.len(), 36);
    assert_eq!(jti.as_bytes()[14], b'4');
    assert_ne!(
        jti,
        text_of(&job_claims("i", &TokenRequest::default(), 0), "jti")
    );
}

fn text_of(claims: &Map<String, Value>, name: &str) -> String {
    claims
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn overrides_change_the_claims_github_derives_from_them() {
    let evil = job_claims(
        "i",
        &request("/token?repository=evil/app&ref=refs/tags/v1&environment="),
        0,
    );
    assert_eq!(text_of(&evil, "repository_owner"), "evil");
    assert_ne!(text_of(&evil, "repository_owner_id"), DEFAULT_OWNER_ID);
    assert_ne!(text_of(&evil, "repository_id"), DEFAULT_REPOSITORY_ID);
    assert_eq!(text_of(&evil, "sub"), "repo:evil/app:ref:refs/tags/v1");
    assert_eq!(text_of(&evil, "ref_type"), "tag");
    assert_eq!(
        text_of(&evil, "job_workflow_ref"),
        "evil/app/.github/workflows/deploy.yml@refs/tags/v1"
    );
    assert!(!evil.contains_key("environment"));
    // Explicit values win over derived ones; numeric dates stay numbers.
    let explicit = job_claims(
        "i",
        &request("/token?repository=evil/app&repository_owner=acme&exp=5&actor="),
        0,
    );
    assert_eq!(text_of(&explicit, "repository_owner"), "acme");
    assert_eq!(explicit.get("exp"), Some(&Value::from(5)));
    assert!(!explicit.contains_key("actor"));
}

#[test]
fn the_issuer_publishes_only_public_material() {
    let issuer = issuer();
    let jwks = issuer.jwks().to_string();
    for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
        assert!(!jwks.contains(private), "{jwks}");
    }
    assert!(!format!("{issuer:?}").contains("key"));
    let discovery = issuer.discovery();
    assert_eq!(discovery["issuer"], "http://127.0.0.1:8090");
    assert_eq!(
        discovery["jwks_uri"],
        "http://127.0.0.1:8090/.well-known/jwks"
    );
    assert_eq!(issuer.kid().len(), 43);
}

/// Every printed example, run through the gateway's own verification and rules against
/// the demo config, gives the status it says. (`tests/demo.rs` does it over HTTP.)
#[test]
fn examples_give_the_printed_outcome() {
    let issuer = issuer();
    let config = embedded_config(DEFAULT_PORTS);
    let keys = crate::auth::keys::jwks::parse_jwks(
        issuer.jwks().to_string().as_bytes(),
        "demo",
        &[Algorithm::RS256],
    )
    .expect("the gateway accepts the demo JWKS");
    let issuer_config = Arc::clone(&config.issuers[0]);
    let now = crate::clock::unix_now();
    for example in EXAMPLES {
        let route = config
            .routes
            .iter()
            .filter(|route| example.path.starts_with(&route.path_prefix))
            .max_by_key(|route| route.path_prefix.len())
            .expect("a route for every example");
        let outcome = match (&route.auth, example.token_query) {
            (None, _) => "public".to_string(),
            (Some(_), None) => Reason::MissingToken.as_str().to_string(),
            (Some(auth), Some(query)) => {
                let target = if example.workflow_style {
                    format!("/token?api-version=2.0&{query}")
                } else {
                    format!("/token?{query}")
                };
                let claims = job_claims(issuer.url(), &request(&target), now);
                let token = issuer.mint(&claims).expect("mint");
                let (header, parts) =
                    parse_header(&token, &issuer_config.algorithms).expect("header");
                let crate::auth::keys::jwks::KeyChoice::Key(key) =
                    keys.select(header.kid.as_deref(), header.alg)
                else {
                    panic!("no key for the demo token's kid");
                };
                let names = crate::auth::identity::wire_names(&issuer_config);
                let verified = verify_with_key(&issuer_config, 1, &names, key, &header, &parts)
                    .expect("the demo token verifies");
                match check_request(
                    &verified,
                    &issuer_config,
                    &auth.audience,
                    u64::try_from(now).unwrap_or(0),
                ) {
                    Err(reason) => reason.as_str().to_string(),
                    Ok(()) => match evaluate(auth, &verified.claims) {
                        PolicyDecision::Allowed { .. } => "allowed".to_string(),
                        _ => Reason::PolicyDenied.as_str().to_string(),
                    },
                }
            }
        };
        // The requests sent first spend the route's limits (same token, same key values).
        let spent = route
            .limits
            .iter()
            .any(|limit| limit.requests <= example.sent_before);
        let outcome = if outcome == "allowed" && spent {
            Reason::RateLimited.as_str().to_string()
        } else {
            outcome
        };
        assert_eq!(outcome, example.outcome, "{}", example.what);
    }
}

#[test]
fn instructions_name_the_ports_and_no_key() {
    let ports = DemoPorts {
        proxy: 1111,
        admin: 2222,
        issuer: 3333,
        upstream: 4444,
    };
    let text = instructions(ports, CONFIG_PATH, issuer().kid(), true);
    assert!(text.contains("TOKEN=$(curl -s 'http://127.0.0.1:3333/token?audience=jobgate-demo' | sed -E 's/.*\"value\":\"([^\"]+)\".*/\\1/')"), "{text}");
    assert!(
        text.contains(
            "curl -i -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:1111/deploy/app"
        )
    );
    assert!(text.contains("curl -s http://127.0.0.1:2222/metrics"));
    assert!(text.contains("http://127.0.0.1:4444"));
    assert!(!text.contains("8080") && !text.contains("8090"));
    assert!(!text.contains("PRIVATE"));
    assert_eq!(text.matches("\n# ").count(), EXAMPLES.len() + 1);
}

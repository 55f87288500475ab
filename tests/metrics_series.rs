//! Issue #11, defect 1 (SPEC §5): `jobgate_auth_failures_total` series start at zero only
//! where they can ever count. The real `jobgate` binary with one public and one
//! authenticated route, a real test issuer and a real echo upstream, all on 127.0.0.1.

mod support;

use support::issuer::TestIssuer;
use support::world::World;

/// The reasons that are auth failures today (SPEC §3's fixed list, less `bad_path`,
/// `no_route` and `upstream_unreachable`).
const AUTH_REASONS: [&str; 16] = [
    "missing_token",
    "invalid_request",
    "malformed_token",
    "token_too_large",
    "alg_not_allowed",
    "unknown_key",
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "revoked",
    "policy_denied",
    "unforwardable_claim",
    "keys_unavailable",
];

const NOT_AUTH_REASONS: [&str; 3] = ["no_route", "bad_path", "upstream_unreachable"];

/// The `jobgate_auth_failures_total` sample lines of `/metrics`.
fn auth_failure_lines(world: &World) -> Vec<String> {
    world
        .metrics_page()
        .lines()
        .filter(|line| line.starts_with("jobgate_auth_failures_total{"))
        .map(str::to_string)
        .collect()
}

#[test]
fn auth_failure_series_exist_only_for_auth_reasons_on_authenticated_routes() {
    let world = World::builder()
        .issuer(TestIssuer::start())
        .audience("aud")
        .upstream("upstream")
        .route(
            "name = \"open\"\npath_prefix = \"/open\"\nupstream = \"{upstream}\"\nauth = false\n",
        )
        .route(&support::world::any_token_route("api", "/api", "{issuer}"))
        .start();

    // Refusals that are not auth failures, and one that is.
    assert_eq!(world.get("/elsewhere").send().status, 404);
    assert_eq!(world.get("/api/a%2Fb").send().status, 400);
    assert_eq!(world.get("/api/x").send().status, 401);

    let lines = auth_failure_lines(&world);
    let page = lines.join("\n");
    for line in &lines {
        assert!(
            line.contains("route=\"api\""),
            "a series for a route without auth: {line}"
        );
        for reason in NOT_AUTH_REASONS {
            assert!(
                !line.contains(&format!("reason=\"{reason}\"")),
                "a series for {reason}: {line}"
            );
        }
    }
    for reason in AUTH_REASONS {
        let expected = if reason == "missing_token" { 1 } else { 0 };
        let sample =
            format!("jobgate_auth_failures_total{{reason=\"{reason}\",route=\"api\"}} {expected}");
        assert!(lines.contains(&sample), "no `{sample}` in:\n{page}");
    }
}

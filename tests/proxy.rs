//! The real `jobgate` binary in front of real upstreams: routing, proxying, anti-spoofing,
//! 404/502, and the admin listener (SPEC §3 steps 1–4 and 9, §5).

mod support;

use std::time::Duration;

use support::free_port;
use support::world::World;

/// The keys of a public route `name` (no token needed) to `upstream`, a TOML value: one
/// quoted URL or a list of them.
fn public_route(name: &str, extra: &str, upstream: &str) -> String {
    format!("name = \"{name}\"\n{extra}\nupstream = {upstream}\nauth = false\n")
}

/// The public route `api` on `/` to the echo upstream `a`.
fn public_api() -> World {
    World::builder()
        .upstream("a")
        .route(&public_route("api", "", "\"{upstream}\""))
        .start()
}

#[test]
fn public_route_forwards_the_request_unchanged_but_for_identity_and_forwarding_headers() {
    let world = public_api();
    let response = world
        .post("/v1/items?x=1&y=two")
        .headers(&[
            ("Host", "api.internal.example"),
            ("X-Custom", "kept"),
            ("Authorization", "Bearer passes-through-on-public-routes"),
            ("X-GitHub-Repository", "evil/spoof"),
            ("X_GitHub_Ref", "refs/heads/spoof"),
            ("X-Jobgate-Route", "spoof"),
            ("x_jobgate_subject", "spoof"),
            ("Content-Type", "text/plain"),
        ])
        .body(b"hello body")
        .send();
    assert_eq!(response.status, 200, "{:?}", response.text());
    let echo = response.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/v1/items?x=1&y=two");
    assert_eq!(echo["body"], "hello body");
    assert_eq!(
        response.echoed_header("x-custom"),
        Some(vec!["kept".to_string()])
    );
    assert_eq!(
        response.echoed_header("host"),
        Some(vec!["api.internal.example".to_string()])
    );
    assert_eq!(
        response.echoed_header("authorization"),
        Some(vec!["Bearer passes-through-on-public-routes".to_string()])
    );
    assert_eq!(
        response.echoed_header("x-forwarded-for"),
        Some(vec!["127.0.0.1".to_string()])
    );
    assert_eq!(
        response.echoed_header("x-forwarded-proto"),
        Some(vec!["http".to_string()])
    );
    let headers = echo["headers"].as_object().expect("headers object");
    for name in headers.keys() {
        let canonical = name.replace('_', "-");
        assert!(
            !canonical.starts_with("x-github-") && !canonical.starts_with("x-jobgate-"),
            "spoofed header {name} reached the upstream"
        );
    }
}

#[test]
fn dot_segments_are_resolved_before_routing_and_encoded_slashes_refused() {
    let world = World::builder()
        .upstream("public")
        .upstream("admin")
        .route(&public_route(
            "public",
            "path_prefix = \"/public\"",
            "\"{upstream:public}\"",
        ))
        .route(&public_route(
            "admin",
            "path_prefix = \"/admin\"",
            "\"{upstream:admin}\"",
        ))
        .start();
    let response = world.get("/public/../admin/x").send();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["upstream"], "admin");
    assert_eq!(response.json()["uri"], "/admin/x");
    for path in [
        "/public/..%2Fadmin",
        "/public/%2e%2e/admin",
        "/public/a%5Cb",
        "/public/%00",
    ] {
        let refused = world.get(path).send();
        assert_eq!(refused.status, 400, "{path}");
        assert_eq!(refused.json()["reason"], "bad_path");
    }
}

#[test]
fn no_route_is_a_json_404() {
    let world = World::builder()
        .upstream("a")
        .route(&public_route(
            "api",
            "path_prefix = \"/v1\"",
            "\"{upstream}\"",
        ))
        .start();
    let response = world.get("/v2/anything").send();
    assert_eq!(response.status, 404);
    let body = response.json();
    assert_eq!(body["reason"], "no_route");
    assert!(body["route"].is_null());
    assert_eq!(world.upstream().hits(), 0);
    assert_eq!(
        world.metric(
            "jobgate_requests_total",
            &[("outcome", "no_route"), ("route", "none")]
        ),
        Some(1.0)
    );
}

#[test]
fn longest_prefix_host_and_wildcard_decide_the_route() {
    // Each route to an upstream of its own name.
    let routes = [
        ("root", "path_prefix = \"/\""),
        ("v1", "path_prefix = \"/v1\""),
        ("deploy", "path_prefix = \"/v1/deploy\""),
        (
            "exact-host",
            "host = \"api.example.test\"\npath_prefix = \"/v1\"",
        ),
        (
            "wildcard",
            "host = \"*.example.test\"\npath_prefix = \"/v1\"",
        ),
    ];
    let world = routes
        .iter()
        .fold(World::builder(), |builder, (name, keys)| {
            builder.upstream(name).route(&public_route(
                name,
                keys,
                &format!("\"{{upstream:{name}}}\""),
            ))
        })
        .start();
    let served_by = |host: &str, path: &str| {
        let response = world.get(path).header("Host", host).send();
        assert_eq!(response.status, 200, "{host}{path}");
        response.json()["upstream"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(served_by("other.test", "/v1/deploy/run"), "deploy");
    assert_eq!(served_by("other.test", "/v1/deployer"), "v1");
    assert_eq!(served_by("other.test", "/elsewhere"), "root");
    assert_eq!(served_by("API.Example.Test:8080", "/v1/x"), "exact-host");
    assert_eq!(served_by("ci.example.test", "/v1/x"), "wildcard");
    assert_eq!(served_by("example.test", "/v1/x"), "v1");
}

#[test]
fn method_filter_applies() {
    let world = World::builder()
        .upstream("posts")
        .route(&public_route(
            "deploy",
            "path_prefix = \"/deploy\"\nmethods = [\"POST\"]",
            "\"{upstream}\"",
        ))
        .start();
    assert_eq!(world.post("/deploy").body(b"x").send().status, 200);
    assert_eq!(world.get("/deploy").send().status, 404);
    assert_eq!(world.upstream().hits(), 1);
}

#[test]
fn round_robin_over_two_upstreams_and_a_dead_one_is_skipped() {
    let world = World::builder()
        .upstream("a")
        .upstream("b")
        .define("dead", &format!("http://127.0.0.1:{}", free_port()))
        .route(&public_route(
            "api",
            "",
            "[\"{upstream:a}\", \"{upstream:b}\", \"{dead}\"]",
        ))
        .start();
    let (a, b) = (world.upstream_named("a"), world.upstream_named("b"));
    for _ in 0..12 {
        let response = world.get("/").send();
        assert_eq!(
            response.status, 200,
            "a dead peer must be retried on the next one"
        );
    }
    assert!(
        a.hits() >= 4 && b.hits() >= 4,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
    assert_eq!(a.hits() + b.hits(), 12);
}

#[test]
fn all_upstreams_down_is_a_json_502() {
    let world = World::builder()
        .define("dead_a", &format!("http://127.0.0.1:{}", free_port()))
        .define("dead_b", &format!("http://127.0.0.1:{}", free_port()))
        .route(&public_route("api", "", "[\"{dead_a}\", \"{dead_b}\"]"))
        .start();
    let response = world.get("/x").send();
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["reason"], "upstream_unreachable");
    assert_eq!(response.json()["route"], "api");
    assert_eq!(
        world.metric(
            "jobgate_requests_total",
            &[("outcome", "upstream_error"), ("route", "api")]
        ),
        Some(1.0)
    );
}

#[test]
fn an_authenticated_route_never_reaches_the_upstream_unverified() {
    // The issuer is a port nobody listens on: the gateway never has keys.
    let world = World::builder()
        .upstream("secret")
        .define("nobody", &format!("http://127.0.0.1:{}", free_port()))
        .config("[[issuer]]\nname = \"test\"\nurl = \"{nobody}\"\n")
        .route(
            r#"
            name = "secret"
            upstream = "{upstream}"
            audience = "jobgate-test"
            [[route.allow]]
            "#,
        )
        .start_listening();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not.a.token")],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
    ] {
        let response = world.get("/").headers(&headers).send();
        assert!(
            [400, 401, 403, 503].contains(&response.status),
            "status {}",
            response.status
        );
    }
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn admin_endpoints_answer_and_count_requests_by_route_and_outcome() {
    let world = public_api();
    assert_eq!(world.admin_get("/healthz").status, 200);
    assert_eq!(world.readyz().status, 200);
    for _ in 0..3 {
        assert_eq!(world.get("/hello").send().status, 200);
    }
    assert_eq!(
        world.metric(
            "jobgate_requests_total",
            &[("outcome", "public"), ("route", "api")]
        ),
        Some(3.0)
    );
    assert_eq!(
        world.metric(
            "jobgate_upstream_responses_total",
            &[("class", "2xx"), ("route", "api")]
        ),
        Some(3.0)
    );
    let page = world.metrics_page();
    assert!(page.contains("jobgate_build_info{version=\""));
    assert!(page.contains("jobgate_request_duration_seconds_bucket{route=\"api\""));
}

#[test]
fn sigterm_exits_zero() {
    let mut world = public_api();
    world.signal("TERM");
    assert_eq!(world.wait_exit(Duration::from_secs(10)), Some(0));
}

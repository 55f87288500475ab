//! The real `jobgate` binary in front of real upstreams: routing, proxying, anti-spoofing,
//! 404/502, and the admin listener (SPEC §3 steps 1–4 and 9, §5).

mod support;

use std::time::Duration;

use support::{EchoUpstream, Jobgate, free_port, get, raw_request};

fn public_route(name: &str, extra: &str, upstream: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\n{extra}\nupstream = {upstream}\nauth = false\n\n")
}

#[test]
fn public_route_forwards_the_request_unchanged_but_for_identity_and_forwarding_headers() {
    let upstream = EchoUpstream::start("a");
    let gateway = Jobgate::start(&public_route("api", "", &format!("\"{}\"", upstream.url())));
    let response = raw_request(
        gateway.addr,
        "POST",
        "/v1/items?x=1&y=two",
        &[
            ("Host", "api.internal.example"),
            ("X-Custom", "kept"),
            ("Authorization", "Bearer passes-through-on-public-routes"),
            ("X-GitHub-Repository", "evil/spoof"),
            ("X_GitHub_Ref", "refs/heads/spoof"),
            ("X-Jobgate-Route", "spoof"),
            ("x_jobgate_subject", "spoof"),
            ("Content-Type", "text/plain"),
        ],
        b"hello body",
    );
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
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
    let public = EchoUpstream::start("public");
    let admin = EchoUpstream::start("admin");
    let config = format!(
        "{}{}",
        public_route(
            "public",
            "path_prefix = \"/public\"",
            &format!("\"{}\"", public.url())
        ),
        public_route(
            "admin",
            "path_prefix = \"/admin\"",
            &format!("\"{}\"", admin.url())
        ),
    );
    let gateway = Jobgate::start(&config);
    let response = get(gateway.addr, "/public/../admin/x");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["upstream"], "admin");
    assert_eq!(response.json()["uri"], "/admin/x");
    for path in [
        "/public/..%2Fadmin",
        "/public/%2e%2e/admin",
        "/public/a%5Cb",
        "/public/%00",
    ] {
        let refused = get(gateway.addr, path);
        assert_eq!(refused.status, 400, "{path}");
        assert_eq!(refused.json()["reason"], "bad_path");
    }
}

#[test]
fn no_route_is_a_json_404() {
    let upstream = EchoUpstream::start("a");
    let gateway = Jobgate::start(&public_route(
        "api",
        "path_prefix = \"/v1\"",
        &format!("\"{}\"", upstream.url()),
    ));
    let response = get(gateway.addr, "/v2/anything");
    assert_eq!(response.status, 404);
    let body = response.json();
    assert_eq!(body["reason"], "no_route");
    assert!(body["route"].is_null());
    assert_eq!(upstream.hits(), 0);
    assert_eq!(
        gateway.metric(r#"jobgate_requests_total{outcome="no_route",route="none"}"#),
        Some(1.0)
    );
}

#[test]
fn longest_prefix_host_and_wildcard_decide_the_route() {
    let names = ["root", "v1", "deploy", "exact-host", "wildcard"];
    let upstreams: Vec<EchoUpstream> = names.iter().map(|n| EchoUpstream::start(n)).collect();
    let url = |i: usize| format!("\"{}\"", upstreams[i].url());
    let config = [
        public_route("root", "path_prefix = \"/\"", &url(0)),
        public_route("v1", "path_prefix = \"/v1\"", &url(1)),
        public_route("deploy", "path_prefix = \"/v1/deploy\"", &url(2)),
        public_route(
            "exact-host",
            "host = \"api.example.test\"\npath_prefix = \"/v1\"",
            &url(3),
        ),
        public_route(
            "wildcard",
            "host = \"*.example.test\"\npath_prefix = \"/v1\"",
            &url(4),
        ),
    ]
    .concat();
    let gateway = Jobgate::start(&config);
    let served_by = |host: &str, path: &str| {
        let response = raw_request(gateway.addr, "GET", path, &[("Host", host)], b"");
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
    let posts = EchoUpstream::start("posts");
    let config = public_route(
        "deploy",
        "path_prefix = \"/deploy\"\nmethods = [\"POST\"]",
        &format!("\"{}\"", posts.url()),
    );
    let gateway = Jobgate::start(&config);
    assert_eq!(
        raw_request(gateway.addr, "POST", "/deploy", &[], b"x").status,
        200
    );
    assert_eq!(get(gateway.addr, "/deploy").status, 404);
    assert_eq!(posts.hits(), 1);
}

#[test]
fn round_robin_over_two_upstreams_and_a_dead_one_is_skipped() {
    let a = EchoUpstream::start("a");
    let b = EchoUpstream::start("b");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = public_route(
        "api",
        "",
        &format!("[\"{}\", \"{}\", \"{dead}\"]", a.url(), b.url()),
    );
    let gateway = Jobgate::start(&config);
    for _ in 0..12 {
        let response = get(gateway.addr, "/");
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
    let dead_a = format!("http://127.0.0.1:{}", free_port());
    let dead_b = format!("http://127.0.0.1:{}", free_port());
    let gateway = Jobgate::start(&public_route(
        "api",
        "",
        &format!("[\"{dead_a}\", \"{dead_b}\"]"),
    ));
    let response = get(gateway.addr, "/x");
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["reason"], "upstream_unreachable");
    assert_eq!(response.json()["route"], "api");
    assert_eq!(
        gateway.metric(r#"jobgate_requests_total{outcome="upstream_error",route="api"}"#),
        Some(1.0)
    );
}

#[test]
fn an_authenticated_route_never_reaches_the_upstream_unverified() {
    let upstream = EchoUpstream::start("secret");
    let config = format!(
        "[[issuer]]\nname = \"test\"\nurl = \"http://127.0.0.1:{}\"\n\n[[route]]\nname = \"secret\"\nupstream = \"{}\"\naudience = \"jobgate-test\"\n[[route.allow]]\n",
        free_port(),
        upstream.url()
    );
    let gateway = Jobgate::start(&config);
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not.a.token")],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
    ] {
        let response = raw_request(gateway.addr, "GET", "/", &headers, b"");
        assert!(
            [400, 401, 403, 503].contains(&response.status),
            "status {}",
            response.status
        );
    }
    assert_eq!(upstream.hits(), 0);
}

#[test]
fn admin_endpoints_answer_and_count_requests_by_route_and_outcome() {
    let upstream = EchoUpstream::start("a");
    let gateway = Jobgate::start(&public_route("api", "", &format!("\"{}\"", upstream.url())));
    assert_eq!(get(gateway.admin, "/healthz").status, 200);
    assert_eq!(get(gateway.admin, "/readyz").status, 200);
    for _ in 0..3 {
        assert_eq!(get(gateway.addr, "/hello").status, 200);
    }
    assert_eq!(
        gateway.metric(r#"jobgate_requests_total{outcome="public",route="api"}"#),
        Some(3.0)
    );
    assert_eq!(
        gateway.metric(r#"jobgate_upstream_responses_total{class="2xx",route="api"}"#),
        Some(3.0)
    );
    let page = String::from_utf8_lossy(&get(gateway.admin, "/metrics").body).into_owned();
    assert!(page.contains("jobgate_build_info{version=\""));
    assert!(page.contains("jobgate_request_duration_seconds_bucket{route=\"api\""));
}

#[test]
fn sigterm_exits_zero() {
    let upstream = EchoUpstream::start("a");
    let mut gateway = Jobgate::start(&public_route("api", "", &format!("\"{}\"", upstream.url())));
    gateway.signal("TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0));
}

//! `jobgate explain` end to end (SPEC §1): the real binary, a config written by the test and
//! tokens built by hand with a fake signature, since explain never checks one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The instant every test evaluates time at (`--now`), so the output is deterministic.
const NOW: u64 = 1_764_122_400;
const AUD: &str = "https://deploy.internal.example";
const URL: &str = "https://deploy.internal.example/v1/deploy";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"

[[issuer]]
name = "github"
url = "https://token.actions.githubusercontent.com"
leeway = "60s"
max_token_age = "15m"

[[route]]
name = "deploy"
host = "deploy.internal.example"
path_prefix = "/v1/deploy"
methods = ["POST"]
upstream = "http://127.0.0.1:9"
audience = "https://deploy.internal.example"

[[route.deny]]
runner_environment = "self-hosted"

[[route.allow]]
repository_owner = "acme"
repository = "acme/app"
ref = ["refs/heads/main", "refs/tags/v*"]
environment = "production"
"#;

/// A temp dir holding the test config; removed on drop.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(config: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("jobgate.toml"), config).expect("write config");
        Setup { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("jobgate.toml")
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A GitHub-shaped token that the test config allows, with `overrides` applied (a JSON
/// null removes the claim). The signature is junk: explain must not care.
fn token(overrides: Value) -> String {
    let mut claims = json!({
        "iss": "https://token.actions.githubusercontent.com",
        "aud": AUD,
        "sub": "repo:acme/app:environment:production",
        "repository": "acme/app",
        "repository_id": "89012345",
        "repository_owner": "acme",
        "repository_owner_id": "1234567",
        "ref": "refs/heads/main",
        "sha": "2f1e0c1d3b4a59687766554433221100ffeeddcc",
        "actor": "octocat",
        "event_name": "push",
        "environment": "production",
        "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "run_id": "12345678901",
        "run_attempt": "1",
        "check_run_id": "52711234567",
        "runner_environment": "github-hosted",
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 240,
        "jti": "5b9f1c3e",
    });
    let object = claims.as_object_mut().expect("claims object");
    for (name, value) in overrides.as_object().expect("overrides object") {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    format!(
        "{}.{}.ZmFrZS1zaWduYXR1cmU",
        b64(&json!({"alg": "RS256", "kid": "k"})),
        b64(&claims)
    )
}

fn jobgate(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jobgate");
    let input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        let mut input = input;
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("jobgate output")
}

/// Runs explain at [`NOW`] and returns (exit code, stdout, stderr).
fn explain(config: &Path, token: &str, method: &str, url: &str, extra: &[&str]) -> Run {
    let now = NOW.to_string();
    let config = config.to_str().expect("utf-8 path");
    let mut args = vec![
        "explain", "-c", config, "--token", token, "--method", method, "--url", url, "--now", &now,
    ];
    args.extend_from_slice(extra);
    Run::from(jobgate(&args, None))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Exit 0, the warning first, and never the token's payload in the output.
    fn ok(self, token: &str) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stdout.starts_with("!! SIGNATURE NOT CHECKED"),
            "{}",
            self.stdout
        );
        let payload = token.split('.').nth(1).expect("payload part");
        assert!(!self.stdout.contains(payload), "the token leaked");
        self
    }

    fn decision(&self) -> &str {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix("decision  "))
            .unwrap_or_else(|| panic!("no decision line in:\n{}", self.stdout))
    }

    /// The condition row of `claim` (the first one, in rule order).
    fn condition(&self, claim: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{claim} ")))
            .unwrap_or_else(|| panic!("no {claim} row in:\n{}", self.stdout))
    }

    fn check(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| {
                line.split_whitespace().nth(1) == Some(name)
                    && matches!(
                        line.split_whitespace().next(),
                        Some("PASS" | "FAIL" | "SKIP")
                    )
            })
            .unwrap_or_else(|| panic!("no {name} check in:\n{}", self.stdout))
    }
}

#[test]
fn an_allowed_token_names_the_rule_and_the_upstream_headers() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({}));
    let run = explain(&setup.config(), &token, "POST", URL, &[]).ok(&token);
    assert!(
        run.stdout.contains("does not contact the issuer"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("token     alg \"RS256\", kid \"k\""));
    assert!(
        run.stdout
            .contains("request   POST /v1/deploy (host deploy.internal.example)")
    );
    assert!(run.stdout.contains(
        "route     deploy: issuer github (https://token.actions.githubusercontent.com), \
         audience https://deploy.internal.example, mode enforce"
    ));
    assert_eq!(run.decision(), "would be ALLOWED by deploy.allow[0]");
    assert!(
        run.check("signature").starts_with("  SKIP"),
        "{}",
        run.stdout
    );
    for name in ["iss", "aud", "exp", "nbf", "iat", "max_token_age"] {
        assert!(run.check(name).starts_with("  PASS"), "{}", run.stdout);
    }
    assert!(run.stdout.contains("  x-github-repository: acme/app\n"));
    assert!(run.stdout.contains(
        "  x-github-job-url: https://github.com/acme/app/actions/runs/12345678901/job/52711234567\n"
    ));
    assert!(run.stdout.contains("  x-jobgate-route: deploy\n"));
}

#[test]
fn a_matching_deny_rule_denies_and_is_named() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({"runner_environment": "self-hosted"}));
    let run = explain(&setup.config(), &token, "POST", URL, &[]).ok(&token);
    assert_eq!(
        run.decision(),
        "DENIED (403 policy_denied) by deploy.deny[0]"
    );
    assert!(
        run.stdout
            .contains("deploy.deny[0]: MATCHES: denies  <- decides")
    );
    let row = run.condition("runner_environment");
    assert!(
        row.contains("\"self-hosted\"") && row.ends_with('✓'),
        "{row}"
    );
    assert!(
        run.stdout
            .contains("upstream  nothing: the request is refused")
    );
}

#[test]
fn no_matching_allow_rule_shows_the_failing_condition() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({"ref": "refs/heads/feature", "environment": null}));
    let run = explain(&setup.config(), &token, "POST", URL, &[]).ok(&token);
    assert_eq!(
        run.decision(),
        "DENIED (403 policy_denied): no allow rule matched \
         (deploy.allow[0] fails on ref, environment)"
    );
    let row = run.condition("ref");
    assert!(
        row.contains(r#"["refs/heads/main", "refs/tags/v*"]"#)
            && row.contains(r#""refs/heads/feature""#)
            && row.ends_with('✗'),
        "{row}"
    );
    let row = run.condition("environment");
    assert!(row.contains("(absent)") && row.ends_with('✗'), "{row}");
    assert!(run.condition("repository_owner").ends_with('✓'));
}

#[test]
fn a_wrong_audience_is_a_401_before_the_rules() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({"aud": ["https://other.example", "sts.amazonaws.com"]}));
    let run = explain(&setup.config(), &token, "POST", URL, &[]).ok(&token);
    assert!(
        run.decision().starts_with("DENIED (401 wrong_audience)"),
        "{}",
        run.stdout
    );
    assert!(run.check("aud").starts_with("  FAIL"));
    assert!(
        run.stdout
            .contains("not reached, a check above refuses first")
    );
}

#[test]
fn an_expired_token_is_a_401_with_how_long_ago() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({"exp": NOW - 3_600, "iat": NOW - 3_900, "nbf": null}));
    let run = explain(&setup.config(), &token, "POST", URL, &[]).ok(&token);
    assert_eq!(
        run.decision(),
        "DENIED (401 expired): exp: expired 1h ago (leeway 1m)"
    );
    assert!(run.check("max_token_age").starts_with("  FAIL"));
    // Within the leeway it still passes, as in the gateway.
    let token = crate::token(json!({"exp": NOW - 30}));
    let run = explain(&setup.config(), &token, "POST", URL, &[]).ok(&token);
    assert_eq!(run.decision(), "would be ALLOWED by deploy.allow[0]");
}

#[test]
fn no_route_is_a_404_and_lists_the_routes() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({}));
    let run = explain(&setup.config(), &token, "GET", URL, &[]).ok(&token);
    assert_eq!(run.decision(), "no route: 404 no_route");
    assert!(
        run.stdout
            .contains("configured: deploy: deploy.internal.example /v1/deploy POST")
    );
    let run = explain(
        &setup.config(),
        &token,
        "POST",
        "https://deploy.internal.example/v1/deployer",
        &[],
    )
    .ok(&token);
    assert_eq!(run.decision(), "no route: 404 no_route");
}

#[test]
fn json_output_has_the_same_content() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({"ref": "refs/heads/feature"}));
    let run = explain(&setup.config(), &token, "POST", URL, &["--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let value: Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(value["signature_checked"], false);
    assert_eq!(value["issuer_contacted"], false);
    assert_eq!(value["token"]["kid"], "k");
    assert_eq!(value["request"]["path"], "/v1/deploy");
    assert_eq!(value["route"]["name"], "deploy");
    assert_eq!(value["route"]["issuer"], "github");
    assert_eq!(value["route"]["audience"], AUD);
    let checks = value["checks"].as_array().expect("checks");
    let check = |name: &str| {
        checks
            .iter()
            .find(|check| check["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check"))
    };
    assert_eq!(check("aud")["result"], "pass");
    assert_eq!(check("signature")["result"], "not_checked");
    assert_eq!(value["rules"][0]["rule"], "deploy.deny[0]");
    let allow = &value["rules"][1];
    assert_eq!(allow["rule"], "deploy.allow[0]");
    assert_eq!(allow["matched"], false);
    let conditions = allow["conditions"].as_array().expect("conditions");
    let failing: Vec<&Value> = conditions
        .iter()
        .filter(|condition| condition["matched"] == false)
        .collect();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0]["claim"], "ref");
    assert_eq!(failing[0]["actual"], "\"refs/heads/feature\"");
    assert_eq!(value["decision"]["outcome"], "denied");
    assert_eq!(value["decision"]["status"], 403);
    assert_eq!(value["decision"]["reason"], "policy_denied");
    assert_eq!(value["headers"], Value::Null);
    assert!(
        !run.stdout
            .contains(token.split('.').nth(1).expect("payload"))
    );

    let allowed = crate::token(json!({}));
    let run = explain(&setup.config(), &allowed, "POST", URL, &["--json"]);
    let value: Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(value["decision"]["outcome"], "allowed");
    assert_eq!(value["decision"]["rule"], "deploy.allow[0]");
    assert_eq!(value["headers"]["x-github-ref"], "refs/heads/main");
}

#[test]
fn the_token_can_come_from_stdin() {
    let setup = Setup::new(CONFIG);
    let token = token(json!({}));
    let now = NOW.to_string();
    let config = setup.config();
    let args = [
        "explain",
        "-c",
        config.to_str().expect("utf-8"),
        "--token",
        "-",
        "--method",
        "POST",
        "--url",
        URL,
        "--now",
        &now,
    ];
    let run = Run::from(jobgate(&args, Some(&format!("Bearer {token}\n")))).ok(&token);
    assert_eq!(run.decision(), "would be ALLOWED by deploy.allow[0]");
}

#[test]
fn an_undecodable_token_exits_2_without_echoing_it() {
    let setup = Setup::new(CONFIG);
    let secret = "c2VjcmV0LXRva2VuLXRleHQ";
    for bad in [
        secret.to_owned(),
        format!("{secret}.{secret}"),
        format!("{secret}.{secret}.sig"),
        format!("{}.bm90IGpzb24.sig", b64(&json!({"alg": "RS256"}))),
    ] {
        let run = explain(&setup.config(), &bad, "POST", URL, &[]);
        assert_eq!(run.code, Some(2), "{bad}: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(
            run.stderr.starts_with("jobgate explain: "),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains(secret), "{}", run.stderr);
    }
}

#[test]
fn a_bad_config_or_url_exits_2() {
    let setup = Setup::new("[server]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n");
    let token = token(json!({}));
    let run = explain(&setup.config(), &token, "POST", URL, &[]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("jobgate.toml:3:"), "{}", run.stderr);
    let setup = Setup::new(CONFIG);
    let run = explain(&setup.config(), &token, "POST", "not a url", &[]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("is not a URL"), "{}", run.stderr);
}

/// SPEC §8 / issue #12: explain shows a route's limits (it reads and spends no bucket).
#[test]
fn explain_shows_the_route_limits() {
    let config = format!(
        "{CONFIG}\n[[route.limit]]\nkey = \"check_run_id\"\nrequests = 10\nper = \"1m\"\n\n\
         [[route.limit]]\nkey = \"client_ip\"\nrequests = 50\nper = \"1s\"\n"
    );
    let setup = Setup::new(&config);
    let run = explain(&setup.config(), &token(json!({})), "POST", URL, &[]);
    assert!(
        run.stdout
            .contains("limits    check_run_id: 10 per 60s; client_ip: 50 per 1s"),
        "{}",
        run.stdout
    );
    let json_run = explain(&setup.config(), &token(json!({})), "POST", URL, &["--json"]);
    let value: Value = serde_json::from_str(&json_run.stdout).expect("json output");
    assert_eq!(value["route"]["limits"][0], "check_run_id: 10 per 60s");
}

//! One test's world: a test issuer with real keys, echo upstreams, and the real `jobgate`
//! binary started from a config snippet, all on 127.0.0.1; then a request builder, readers
//! for `/metrics` and the audit log, and the process's health, memory and descriptors.
//!
//! ```text
//! let world = World::builder()
//!     .issuer(TestIssuer::start())
//!     .audience(AUD)
//!     .upstream("api")
//!     .route(r#"
//!         name = "api"
//!         upstream = "{upstream}"
//!         issuer = "{issuer}"
//!         audience = "{audience}"
//!         [[route.allow]]
//!     "#)
//!     .start();
//! let response = world.get("/v1/things").bearer(&world.token()).send();
//! world.metric("jobgate_requests_total", &[("route", "api"), ("outcome", "allowed")]);
//! ```
//!
//! Config text may name what only exists once the world runs: `{issuer}` (the issuer's
//! name), `{issuer_url}`, `{audience}`, `{upstream}` (the first echo upstream's URL),
//! `{upstream:NAME}`, and any `{NAME}` given to [`WorldBuilder::define`]. A placeholder
//! left unfilled fails the test before jobgate starts. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::issuer::{TestIssuer, TestKey};
use super::{
    EchoUpstream, Jobgate, RawResponse, free_ports, get, metrics, raw_request, resend_until,
    wait_until,
};

/// How long a world waits for the gateway by default: generous for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// The audit file's name in the world's directory, when [`WorldBuilder::audit_file`] asks
/// for one.
const AUDIT_FILE: &str = "audit.jsonl";

/// The keys of an authenticated route `name` on `prefix` to the first echo upstream, for
/// `issuer` (`{issuer}` for the world's own) and the world's audience, whose empty allow
/// rule admits every verified token: fine for a loopback, non-GitHub issuer.
pub fn any_token_route(name: &str, prefix: &str, issuer: &str) -> String {
    format!(
        "name = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{{upstream}}\"\n\
         issuer = \"{issuer}\"\naudience = \"{{audience}}\"\n\n[[route.allow]]\n"
    )
}

/// What a world will be; [`World::builder`] makes one.
#[must_use]
pub struct WorldBuilder {
    issuer: Option<TestIssuer>,
    issuer_name: String,
    issuer_keys: String,
    audience: Option<String>,
    upstreams: Vec<String>,
    server: String,
    audit_file: bool,
    sections: Vec<String>,
    values: Vec<(String, String)>,
    env: Vec<(String, String)>,
}

impl WorldBuilder {
    /// The issuer whose keys the gateway loads, as an `[[issuer]]` named `test` (see
    /// [`WorldBuilder::issuer_name`]). Configure its failures before handing it over.
    pub fn issuer(mut self, issuer: TestIssuer) -> Self {
        self.issuer = Some(issuer);
        self
    }

    pub fn issuer_name(mut self, name: &str) -> Self {
        self.issuer_name = name.to_string();
        self
    }

    /// More lines in the `[[issuer]]` table (`refresh = "1s"`, `kind = "github"`, an
    /// `[issuer.headers]` sub-table last, …). `min_refetch_interval` is 1 s unless set here.
    pub fn issuer_keys(mut self, lines: &str) -> Self {
        self.issuer_keys.push_str(lines);
        self.issuer_keys.push('\n');
        self
    }

    /// The audience of [`World::token`] and of `{audience}`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_string());
        self
    }

    /// An echo upstream that answers with a JSON echo of each request and `x-upstream:
    /// name`: `{upstream}` for the first one, `{upstream:name}` for any.
    pub fn upstream(mut self, name: &str) -> Self {
        self.upstreams.push(name.to_string());
        self
    }

    /// More lines in `[server]`. Unless they say otherwise, the gateway runs one worker
    /// thread and drains for at most 2 s.
    pub fn server(mut self, lines: &str) -> Self {
        self.server.push_str(lines);
        self.server.push('\n');
        self
    }

    /// Audit lines go to a file that [`World::audit_lines`] reads; otherwise the audit
    /// log is off.
    pub fn audit_file(mut self) -> Self {
        self.audit_file = true;
        self
    }

    /// A `[[route]]` table: `text` holds its keys and may end with its rule tables.
    pub fn route(self, text: &str) -> Self {
        self.config(&format!("[[route]]\n{}", unindent(text)))
    }

    /// Any other config text, each part opening with its own table header (`[revocation]`,
    /// an `[[issuer]]` of a server that is not a test issuer, …).
    pub fn config(mut self, text: &str) -> Self {
        self.sections.push(unindent(text));
        self
    }

    /// `{name}` in config text becomes `value`.
    pub fn define(mut self, name: &str, value: &str) -> Self {
        self.values.push((name.to_string(), value.to_string()));
        self
    }

    /// An environment variable for the gateway process (`SSL_CERT_FILE`, …).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts everything and waits until `/readyz` answers 200: every issuer has keys.
    pub fn start(self) -> World {
        let world = self.start_listening();
        world.wait_ready();
        world
    }

    /// Starts everything and waits only until the gateway's ports accept connections: for
    /// a world whose issuer is down on purpose.
    pub fn start_listening(self) -> World {
        let upstreams: Vec<EchoUpstream> = self
            .upstreams
            .iter()
            .map(|name| EchoUpstream::start(name))
            .collect();
        let [port, admin_port] = free_ports();
        let mut config = self.server_section(port, admin_port);
        let audit = if self.audit_file { AUDIT_FILE } else { "off" };
        config.push_str(&format!("[audit]\noutput = \"{audit}\"\n\n"));
        if let Some(issuer) = &self.issuer {
            config.push_str(&issuer.issuer_table(&self.issuer_name, &self.issuer_keys));
            config.push('\n');
        }
        for section in &self.sections {
            config.push_str(section);
            config.push('\n');
        }
        let config = self.fill(&config, &upstreams);
        let gateway = Jobgate::start(&config, port, admin_port, &self.env);
        World {
            audit_path: self.audit_file.then(|| gateway.dir.path().join(AUDIT_FILE)),
            gateway,
            upstreams,
            issuer: self.issuer,
            audience: self.audience,
            sent: Mutex::new(Vec::new()),
        }
    }

    fn server_section(&self, port: u16, admin_port: u16) -> String {
        let mut section = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"
        );
        if !self.server.contains("threads") {
            section.push_str("threads = 1\n");
        }
        if !self.server.contains("grace_period") {
            section.push_str("grace_period = \"2s\"\n");
        }
        section.push_str(&self.server);
        section.push('\n');
        section
    }

    /// Replaces every placeholder; panics on one it does not know.
    fn fill(&self, text: &str, upstreams: &[EchoUpstream]) -> String {
        let mut values: Vec<(String, String)> = self.values.clone();
        if let Some(issuer) = &self.issuer {
            values.push(("issuer".into(), self.issuer_name.clone()));
            values.push(("issuer_url".into(), issuer.url()));
        }
        if let Some(audience) = &self.audience {
            values.push(("audience".into(), audience.clone()));
        }
        if let Some(first) = upstreams.first() {
            values.push(("upstream".into(), first.url()));
        }
        for upstream in upstreams {
            values.push((format!("upstream:{}", upstream.name), upstream.url()));
        }
        let mut filled = text.to_string();
        for (name, value) in &values {
            filled = filled.replace(&format!("{{{name}}}"), value);
        }
        if let Some(left) = unfilled(&filled) {
            panic!("config placeholder {left} has no value in:\n{filled}");
        }
        filled
    }
}

/// The first `{identifier}` in `text`: TOML inline tables (`{ regex = "…" }`) have spaces,
/// and glob braces (`{a,b}`) have commas, so neither looks like one.
fn unfilled(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let length = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_:-".contains(c)))
            .unwrap_or(after.len());
        if length > 0 && after[length..].starts_with('}') {
            return Some(&rest[open..open + length + 2]);
        }
        rest = after;
    }
    None
}

/// Raw-string config snippets are indented like the code around them; TOML does not mind,
/// but the file is easier to read in a failure message without it.
fn unindent(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() && out.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A running world; everything stops when it is dropped (the gateway first).
pub struct World {
    gateway: Jobgate,
    upstreams: Vec<EchoUpstream>,
    issuer: Option<TestIssuer>,
    audience: Option<String>,
    audit_path: Option<PathBuf>,
    /// Every bearer token sent through [`Request::bearer`].
    sent: Mutex<Vec<String>>,
}

impl World {
    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            issuer: None,
            issuer_name: "test".to_string(),
            issuer_keys: String::new(),
            audience: None,
            upstreams: Vec::new(),
            server: String::new(),
            audit_file: false,
            sections: Vec::new(),
            values: Vec::new(),
            env: Vec::new(),
        }
    }

    // --- the parts ------------------------------------------------------------------

    pub fn issuer(&self) -> &TestIssuer {
        self.issuer
            .as_ref()
            .expect("this world has no test issuer: give one to World::builder().issuer()")
    }

    /// A valid GitHub-shaped token from the issuer for the world's audience.
    pub fn token(&self) -> String {
        self.issuer().mint_github(self.audience())
    }

    /// A valid GitHub-shaped token for the world's audience, signed by `key` (published or
    /// not) under its kid.
    pub fn token_signed_by(&self, key: &TestKey) -> String {
        let issuer = self.issuer();
        issuer.mint_with_key(key, issuer.github_claims(self.audience()))
    }

    pub fn audience(&self) -> &str {
        self.audience
            .as_deref()
            .expect("this world has no audience: set World::builder().audience()")
    }

    /// The first echo upstream.
    pub fn upstream(&self) -> &EchoUpstream {
        self.upstreams
            .first()
            .expect("this world has no echo upstream: add World::builder().upstream()")
    }

    pub fn upstream_named(&self, name: &str) -> &EchoUpstream {
        self.upstreams
            .iter()
            .find(|upstream| upstream.name == name)
            .unwrap_or_else(|| panic!("this world has no upstream named {name}"))
    }

    /// The proxy listener.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.gateway.addr
    }

    /// The admin listener.
    pub fn admin(&self) -> std::net::SocketAddr {
        self.gateway.admin
    }

    /// The directory of the config file: relative paths in the config (revocation file,
    /// audit file) are relative to it.
    pub fn dir(&self) -> &Path {
        self.gateway.dir.path()
    }

    // --- requests -------------------------------------------------------------------

    pub fn get(&self, target: &str) -> Request<'_> {
        self.request("GET", target)
    }

    pub fn post(&self, target: &str) -> Request<'_> {
        self.request("POST", target)
    }

    /// A request to the proxy listener, sent as [`raw_request`] sends it: exactly these
    /// bytes, with `Connection: close`.
    pub fn request(&self, method: &str, target: &str) -> Request<'_> {
        Request {
            world: self,
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Every bearer token sent so far, to check that none was logged.
    pub fn sent_tokens(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `GET` on the admin listener.
    pub fn admin_get(&self, target: &str) -> RawResponse {
        get(self.gateway.admin, target)
    }

    pub fn readyz(&self) -> RawResponse {
        self.admin_get("/readyz")
    }

    /// Waits until `/readyz` answers 200, at most [`WAIT`].
    #[track_caller]
    pub fn wait_ready(&self) {
        self.wait_readyz(200, WAIT);
    }

    /// Waits (at most `limit`) until `/readyz` answers `status`, and returns that answer.
    #[track_caller]
    pub fn wait_readyz(&self, status: u16, limit: Duration) -> RawResponse {
        resend_until(
            limit,
            || self.readyz(),
            |response| response.status == status,
        )
        .unwrap_or_else(|last| {
            panic!(
                "/readyz still {} after {limit:?} (waiting for {status}): {}",
                last.status,
                last.text()
            )
        })
    }

    // --- metrics --------------------------------------------------------------------

    pub fn metrics_page(&self) -> String {
        self.admin_get("/metrics").text()
    }

    /// The value of the series `name` with exactly these labels (in any order).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metrics::sample(&self.metrics_page(), name, labels)
    }

    /// [`World::metric`], with an absent series read as 0 (a counter nothing counted yet).
    pub fn metric_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric(name, labels).unwrap_or(0.0)
    }

    /// Waits (at most [`WAIT`]) until the series satisfies `ok`, and returns its value
    /// (absent counts as 0). Metrics are recorded when a request ends, which may be a
    /// moment after the client read the response.
    #[track_caller]
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let mut value = 0.0;
        if wait_until(WAIT, || {
            value = self.metric_or_zero(name, labels);
            ok(value)
        }) {
            return value;
        }
        panic!(
            "{} is {value} after {WAIT:?}; /metrics:\n{}",
            metrics::describe(name, labels),
            self.metrics_page()
        );
    }

    // --- the audit log --------------------------------------------------------------

    fn audit_path(&self) -> &Path {
        self.audit_path
            .as_deref()
            .expect("this world's audit log is off: ask World::builder().audit_file()")
    }

    /// The audit file as it is now (empty before the first line).
    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.audit_path()).unwrap_or_default()
    }

    /// Every complete line of the audit file, each parsed as one JSON value (the writer may
    /// be mid-line when the file is read: a partial last line is left out).
    #[track_caller]
    pub fn audit_lines(&self) -> Vec<Value> {
        let text = self.audit_text();
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("audit line is not JSON ({error}): {line}"))
            })
            .collect()
    }

    /// Waits (at most [`WAIT`]) until the audit file has `count` complete lines, and
    /// returns them all.
    #[track_caller]
    pub fn wait_audit_lines(&self, count: usize) -> Vec<Value> {
        let complete = wait_until(WAIT, || {
            let text = self.audit_text();
            text.ends_with('\n') && text.lines().count() >= count
        });
        assert!(
            complete,
            "the audit file has not got {count} lines within {WAIT:?}: {:?}",
            self.audit_text()
        );
        self.audit_lines()
    }

    // --- the process ----------------------------------------------------------------

    pub fn pid(&self) -> u32 {
        self.gateway.child.id()
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, …) to the gateway.
    pub fn signal(&self, signal: &str) {
        self.gateway.signal(signal);
    }

    /// Waits (bounded) for the gateway to exit and returns its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.gateway.wait_exit(limit)
    }

    /// The process is running and `/healthz` answers 200.
    #[track_caller]
    pub fn assert_alive(&mut self) {
        match self.gateway.child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => panic!("jobgate exited: {status}"),
            Err(error) => panic!("cannot poll jobgate: {error}"),
        }
        let health = self.admin_get("/healthz");
        assert_eq!(health.status, 200, "/healthz: {}", health.text());
    }

    /// Rewrites the config file with `edit` applied to its text (send `HUP` to apply it).
    pub fn edit_config(&self, edit: impl FnOnce(&str) -> String) {
        let text = std::fs::read_to_string(&self.gateway.config_path).expect("read the config");
        std::fs::write(&self.gateway.config_path, edit(&text)).expect("rewrite the config");
    }

    /// Resident memory of the gateway, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// File descriptors the gateway holds open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/<pid>/fd")
            .count()
    }
}

/// One request to a world's proxy listener; [`Request::send`] sends it.
#[must_use]
pub struct Request<'w> {
    world: &'w World,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request<'_> {
    /// `Authorization: Bearer token`; the world remembers the token.
    pub fn bearer(self, token: &str) -> Self {
        self.world
            .sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(token.to_string());
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// A header line, sent in the order added (duplicates too).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        headers
            .iter()
            .fold(self, |request, (name, value)| request.header(name, value))
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    pub fn send(self) -> RawResponse {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        raw_request(
            self.world.gateway.addr,
            &self.method,
            &self.target,
            &headers,
            &self.body,
        )
    }
}

//! Helpers shared by the fuzz targets: fixed configs, keys made once per process, and a
//! tokio runtime to drive `authorize`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use jobgate::config::{self, Config};

/// A config with every feature the request path uses: a GitHub-kind issuer (default
/// identity header table plus a custom one), enforce and shadow routes, deny and allow
/// rules with globs, lists, scalars and regexes, host and method routing.
pub const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"
max_token_bytes = 16384

[audit]
output = "off"

[[issuer]]
name = "gh"
url = "http://127.0.0.1:8090"
kind = "github"
algorithms = ["RS256", "ES256"]
leeway = "60s"
max_token_age = "15m"
min_refetch_interval = "1s"

[issuer.headers]
"x-team" = "repository_owner"
"x-audience" = "aud"

[[route]]
name = "deploy"
host = "deploy.example"
path_prefix = "/v1/deploy"
methods = ["POST"]
upstream = "http://127.0.0.1:9"
audience = "https://deploy.example"

[[route.deny]]
runner_environment = "self-hosted"

[[route.deny]]
ref = { regex = "refs/heads/(tmp|wip)/.*" }

[[route.allow]]
repository_owner = "acme"
repository = "acme/*"
ref = ["refs/heads/main", "refs/tags/v?.*"]
environment = { regex = "prod(uction)?|staging-[0-9]+" }

[[route]]
name = "shadow"
host = "*.example"
path_prefix = "/"
upstream = ["http://127.0.0.1:9", "http://127.0.0.1:10"]
audience = "https://shadow.example"
mode = "shadow"

[[route.allow]]
repository_owner = "acme"
run_attempt = 1
ref_protected = true

[[route]]
name = "public"
path_prefix = "/healthz"
upstream = "http://127.0.0.1:9"
auth = false
"#;

/// The audiences of the authenticated routes of [`CONFIG`], in order.
pub const AUDIENCES: [&str; 2] = ["https://deploy.example", "https://shadow.example"];
/// The issuer URL of [`CONFIG`].
pub const ISSUER: &str = "http://127.0.0.1:8090";
/// The `now` of the fuzz targets (Unix seconds).
pub const NOW: u64 = 1_760_000_000;

/// [`CONFIG`] parsed; a new one per call (a `Config` is not `Clone`).
pub fn parse_config() -> Config {
    match config::parse(CONFIG, Path::new("/nonexistent/fuzz/jobgate.toml")) {
        Ok(config) => config,
        Err(error) => panic!("the fuzz config does not parse: {error}"),
    }
}

/// One parsed [`CONFIG`], shared.
pub fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(parse_config)
}

/// The issuer of [`CONFIG`].
pub fn issuer() -> &'static Arc<jobgate::config::IssuerConfig> {
    &config().issuers[0]
}

/// A single-threaded runtime, built once per process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// True for bytes an upstream may receive in a header value: visible ASCII and space.
pub fn forwardable(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
}

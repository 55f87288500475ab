//! The claims of a demo token: a realistic GitHub Actions job of `acme/app`, with any claim
//! overridden by a query parameter of the token request.

use serde_json::{Map, Value, json};

/// How long a minted token is valid, like GitHub's.
const TOKEN_LIFETIME_SECS: i64 = 300;

/// What one call of the token endpoint asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// GitHub's default when absent: the owner's URL, `https://github.com/<owner>`.
    pub audience: Option<String>,
    /// Every other parameter: a claim and its value, in request order. An empty value
    /// removes the claim.
    pub overrides: Vec<(String, String)>,
}

/// Parameters of the token endpoint that are not claims (`api-version` is in GitHub's own
/// `$ACTIONS_ID_TOKEN_REQUEST_URL`).
const NON_CLAIM_PARAMETERS: [&str; 2] = ["audience", "api-version"];

/// Parses a request target for the token endpoint: `/token`, `/token?a=b&…` (also with a
/// leading `&` after the `?`), or `/token&a=b…` — what a workflow script makes of
/// `"$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…"` when the URL has no query. `None`: not the
/// token endpoint.
pub fn parse_token_target(target: &str) -> Option<TokenRequest> {
    let rest = target.strip_prefix("/token")?;
    let query = match rest.chars().next() {
        None => "",
        Some('?' | '&') => &rest[1..],
        Some(_) => return None,
    };
    let mut url = reqwest::Url::parse("http://demo.invalid/token").ok()?;
    url.set_query(Some(query));
    let mut request = TokenRequest::default();
    for (name, value) in url.query_pairs() {
        if name.is_empty() {
            continue;
        }
        if name == "audience" {
            request.audience = Some(value.into_owned());
        } else if !NON_CLAIM_PARAMETERS.contains(&name.as_ref()) {
            request
                .overrides
                .push((name.into_owned(), value.into_owned()));
        }
    }
    Some(request)
}

/// The job the demo issuer mints tokens for, unless a request says otherwise.
const DEFAULT_REPOSITORY: &str = "acme/app";

pub(super) const DEFAULT_REPOSITORY_ID: &str = "812345678";

pub(super) const DEFAULT_OWNER_ID: &str = "51234567";

const DEFAULT_REF: &str = "refs/heads/main";

const DEFAULT_ENVIRONMENT: &str = "production";

const DEFAULT_SHA: &str = "4f9c2a7e1d3b5c8a9e0f1b2c3d4e5f6a7b8c9d0e";

/// A stable, realistic-looking numeric id for a name the demo does not know (so `evil/app`
/// gets an id of its own, not acme's).
fn pseudo_id(name: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike `DefaultHasher`.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (10_000_000 + hash % 890_000_000).to_string()
}

/// A random UUID v4, as GitHub's `jti`.
fn random_uuid() -> String {
    let bits = fastrand::u128(..) & !(0xf000_u128 << 64) | (0x4000_u128 << 64);
    let bits = bits & !(0xc000_u128 << 48) | (0x8000_u128 << 48);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The claims of a GitHub Actions job token from `issuer`, issued at `now`: a push to
/// `main` of `acme/app` deploying to `production` on a GitHub-hosted runner, changed by
/// the request. Claims GitHub derives from others follow the request's `repository`, `ref`
/// and `environment` (a token for `repository=evil/app` names owner `evil`, its own ids
/// and `sub`), unless the request sets them too.
pub fn job_claims(issuer: &str, request: &TokenRequest, now: i64) -> Map<String, Value> {
    let given = |name: &str| {
        request
            .overrides
            .iter()
            .rev()
            .find(|(claim, _)| claim == name)
            .map(|(_, value)| value.as_str())
    };
    let repository = given("repository").unwrap_or(DEFAULT_REPOSITORY);
    let owner = repository.split('/').next().unwrap_or(repository);
    let git_ref = given("ref").unwrap_or(DEFAULT_REF);
    let environment = given("environment").unwrap_or(DEFAULT_ENVIRONMENT);
    let workflow_ref = format!("{repository}/.github/workflows/deploy.yml@{git_ref}");
    let sub = if environment.is_empty() {
        format!("repo:{repository}:ref:{git_ref}")
    } else {
        format!("repo:{repository}:environment:{environment}")
    };
    let (repository_id, owner_id) = if repository == DEFAULT_REPOSITORY {
        (
            DEFAULT_REPOSITORY_ID.to_string(),
            DEFAULT_OWNER_ID.to_string(),
        )
    } else if DEFAULT_REPOSITORY.split('/').next() == Some(owner) {
        (pseudo_id(repository), DEFAULT_OWNER_ID.to_string())
    } else {
        (pseudo_id(repository), pseudo_id(owner))
    };
    let audience = request
        .audience
        .clone()
        .unwrap_or_else(|| format!("https://github.com/{owner}"));
    let ref_type = if git_ref.starts_with("refs/tags/") {
        "tag"
    } else {
        "branch"
    };
    let Value::Object(mut claims) = json!({
        "jti": random_uuid(),
        "sub": sub,
        "aud": audience,
        "ref": git_ref,
        "sha": DEFAULT_SHA,
        "repository": repository,
        "repository_id": repository_id,
        "repository_owner": owner,
        "repository_owner_id": owner_id,
        "repository_visibility": "private",
        "run_id": "15012345678",
        "run_number": "42",
        "run_attempt": "1",
        "check_run_id": "42170012345",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "Deploy",
        "workflow_ref": workflow_ref,
        "workflow_sha": DEFAULT_SHA,
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": DEFAULT_SHA,
        "event_name": "push",
        "ref_type": ref_type,
        "ref_protected": "true",
        "head_ref": "",
        "base_ref": "",
        "environment": environment,
        "environment_node_id": "EN_kwDOMGQxhs8AAAABx2mVfA",
        "iss": issuer,
        "nbf": now,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECS,
    }) else {
        return Map::new();
    };
    if environment.is_empty() {
        // A job without an environment has neither claim.
        claims.remove("environment");
        claims.remove("environment_node_id");
    }
    for (name, value) in &request.overrides {
        if value.is_empty() {
            claims.remove(name);
        } else if matches!(name.as_str(), "exp" | "iat" | "nbf")
            && let Ok(seconds) = value.parse::<i64>()
        {
            claims.insert(name.clone(), Value::from(seconds));
        } else {
            claims.insert(name.clone(), Value::String(value.clone()));
        }
    }
    claims
}

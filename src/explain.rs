//! `jobgate explain`: why a token would be allowed or denied on a request (SPEC §1).
//!
//! An operator debugging a 401 or 403 has a token, a method and a URL; this module replays
//! what `serve` does with them (SPEC §3: path, route, token checks, revocation, deny rules,
//! allow rules, identity headers) and reports every step instead of stopping at the first
//! refusal. It runs offline: the signature is NOT checked and the issuer is never contacted,
//! so everything after decoding describes what the token *claims*; the output says so first.
//!
//! The work is split in three so each part is testable without the binary: [`decode_token`]
//! and [`RequestTarget::parse`] read the inputs, [`explain_request`] builds an
//! [`Explanation`] from the compiled config by calling the gateway's own routing, policy,
//! revocation and identity code, and [`render_text`] / [`render_json`] format it.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use serde_json::{Map, Value, json};

use crate::auth::claims::{ClaimValue, Claims};
use crate::auth::identity::identity_headers;
use crate::auth::verify::{TokenTimes, claim_times, parse_header, split_token};
use crate::config::rules::RuleKind;
use crate::config::{Config, IssuerConfig, Mode, RouteAuth, RouteConfig};
use crate::policy::revocation::RevocationList;
use crate::policy::{self, PolicyDecision, RuleReport};
use crate::proxy::routing::{RouteTable, normalise_path};
use crate::refusal::Reason;

/// Exit status for a bad config, bad usage or a token that cannot be decoded (SPEC §1).
const EXIT_BAD_INPUT: u8 = 2;

/// Printed first, in both formats: a reader must never take explain's "ALLOWED" for a
/// verified token.
pub const SIGNATURE_WARNING: &str = concat!(
    "SIGNATURE NOT CHECKED: explain decodes the token without verifying it ",
    "and does not contact the issuer."
);

/// The consequence of [`SIGNATURE_WARNING`], spelt out.
const FORGERY_NOTE: &str =
    "A forged token with the same claims reads the same; only `jobgate serve` verifies.";

/// Arguments of `jobgate explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The config file.
    #[arg(short, long, default_value = "config/jobgate.toml")]
    pub config: PathBuf,
    /// The token (a JWT; a leading "Bearer " is ignored), or "-" to read it from stdin so it
    /// stays out of shell history and the process list. Its signature is NOT checked.
    #[arg(long)]
    pub token: String,
    /// The request method (case-insensitive).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request URL, e.g. https://deploy.internal.example/v1/deploy, or a path such as
    /// /v1/deploy for routes without a host.
    #[arg(long)]
    pub url: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Check exp, nbf, iat and revocation expiry at this instant (Unix seconds) instead of
    /// now, e.g. to replay a refusal from an audit line.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<u64>,
}

/// Runs the command: 0 whenever an explanation was printed, whatever it decided; 2 for a
/// config, usage or token problem, with the reason on stderr.
pub fn run(args: ExplainArgs) -> ExitCode {
    match explain_args(&args) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Everything `run` does but the printing, so that errors are values.
fn explain_args(args: &ExplainArgs) -> Result<String, String> {
    let config = crate::config::load(&args.config).map_err(|error| error.to_string())?;
    let target = RequestTarget::parse(&args.method, &args.url)?;
    let token = if args.token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| {
                format!("jobgate explain: cannot read the token from stdin: {error}")
            })?;
        text
    } else {
        args.token.clone()
    };
    let token = decode_token(&token).map_err(|error| format!("jobgate explain: {error}"))?;
    let now = args
        .now
        .unwrap_or_else(|| u64::try_from(crate::clock::unix_now()).unwrap_or(0));
    let revocations = RevocationSource::load(&config);
    let explanation = explain_request(&config, &token, &target, &revocations, now);
    Ok(if args.json {
        let mut text = render_json(&explanation).to_string();
        text.push('\n');
        text
    } else {
        render_text(&explanation)
    })
}

// ---------------------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------------------

/// A token split and decoded, NOT verified. `Debug` leaves the token text out, so that
/// no panic message or log line can carry it.
#[derive(Clone)]
pub struct DecodedToken {
    /// The compact token as the gateway would see it (after "Bearer " and whitespace),
    /// kept to run the gateway's own header checks; never printed.
    compact: String,
    /// The JOSE header object.
    pub header: Map<String, Value>,
    /// The payload object.
    pub payload: Map<String, Value>,
    pub claims: Claims,
}

impl std::fmt::Debug for DecodedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedToken")
            .field("bytes", &self.compact.len())
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl DecodedToken {
    /// A string member of the JOSE header.
    fn header_text(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// Size in bytes, as `max_token_bytes` counts it.
    pub fn len(&self) -> usize {
        self.compact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.compact.is_empty()
    }
}

/// Splits a compact JWS and decodes its header and payload as JSON objects, checking
/// nothing else. The error says which part is wrong and never quotes the token.
pub fn decode_token(token: &str) -> Result<DecodedToken, String> {
    let trimmed = token.trim();
    // Operators paste whole header values; the gateway only ever sees what follows "Bearer".
    let compact = match trimmed.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => trimmed,
    };
    if compact.is_empty() {
        return Err("the token is empty".to_owned());
    }
    let (header, parts) = split_token(compact).map_err(|_| {
        "the token cannot be decoded: a JWT is three base64url parts joined by dots \
         (header.payload.signature)"
            .to_owned()
    })?;
    let header = decode_object(header, "header")?;
    let payload = decode_object(parts.payload, "payload")?;
    let claims = Claims::from_json_object(&payload);
    Ok(DecodedToken {
        compact: compact.to_owned(),
        header,
        payload,
        claims,
    })
}

fn decode_object(part: &str, name: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("the token's {name} is not valid base64url"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(format!("the token's {name} is JSON but not an object")),
        Err(_) => Err(format!("the token's {name} is not JSON")),
    }
}

/// The request to explain: what routing looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub method: Method,
    /// Without port; `None` for a bare path (only routes without `host` can match).
    pub host: Option<String>,
    /// As given, not yet normalised; without the query.
    pub path: String,
}

impl RequestTarget {
    /// Reads `--method` and `--url`. The method is upper-cased because operators type
    /// `post` and mean `POST`.
    pub fn parse(method: &str, url: &str) -> Result<RequestTarget, String> {
        let method = Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("jobgate explain: {method:?} is not an HTTP method"))?;
        let uri: http::Uri = url.trim().parse().map_err(|_| {
            format!(
                "jobgate explain: {url:?} is not a URL; give one such as \
                 https://deploy.internal.example/v1/deploy, or a path such as /v1/deploy"
            )
        })?;
        if uri.scheme().is_some() != uri.authority().is_some() || uri.path().is_empty() {
            return Err(format!(
                "jobgate explain: {url:?} is neither a full URL (https://host/path) nor a path \
                 starting with /"
            ));
        }
        Ok(RequestTarget {
            method,
            host: uri.host().map(str::to_owned),
            path: uri.path().to_owned(),
        })
    }
}

/// A TOML error without its source excerpt and caret lines, so it fits one report line.
fn one_line(error: &str) -> String {
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains('|'))
        .collect();
    lines.join(": ")
}

/// The revocation list as `serve` would load it at start.
#[derive(Debug)]
pub enum RevocationSource {
    /// The config has no `[revocation]`.
    None,
    /// Named but missing: `serve` starts with an empty list.
    Missing(PathBuf),
    /// Named but unreadable or invalid: explain cannot tell what `serve` has in force.
    Unusable(PathBuf, String),
    Loaded(PathBuf, RevocationList),
}

impl RevocationSource {
    /// Reads the file the config names, if any.
    pub fn load(config: &Config) -> RevocationSource {
        let Some(path) = &config.revocation_file else {
            return RevocationSource::None;
        };
        let path = path.clone();
        match std::fs::read_to_string(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                RevocationSource::Missing(path)
            }
            Err(error) => RevocationSource::Unusable(path, error.to_string()),
            Ok(text) => match RevocationList::parse(&text) {
                Ok(list) => RevocationSource::Loaded(path, list),
                Err(error) => RevocationSource::Unusable(path, one_line(&error)),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// The explanation.
// ---------------------------------------------------------------------------------------

/// The result of one offline check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Explain cannot tell offline (the signature, an unreadable revocation file).
    NotChecked,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotChecked => "SKIP",
        }
    }

    fn json_name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotChecked => "not_checked",
        }
    }
}

/// One step of SPEC §3 steps 5–8 that can be replayed without the issuer's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What the gateway would answer if this is the first failing check.
    pub reason: Option<Reason>,
}

impl Check {
    fn pass(name: &'static str, detail: String) -> Check {
        Check {
            name,
            verdict: Verdict::Pass,
            detail,
            reason: None,
        }
    }

    fn fail(name: &'static str, reason: Reason, detail: String) -> Check {
        Check {
            name,
            verdict: Verdict::Fail,
            detail,
            reason: Some(reason),
        }
    }

    fn not_checked(name: &'static str, detail: String) -> Check {
        Check {
            name,
            verdict: Verdict::NotChecked,
            detail,
            reason: None,
        }
    }
}

/// The route the request matched, as explain describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    pub name: String,
    /// `None` for a public route (`auth = false`).
    pub auth: Option<AuthSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSummary {
    pub issuer: String,
    pub issuer_url: String,
    pub audience: String,
    pub mode: Mode,
    pub strip_authorization: bool,
}

/// One rule's report with the name the audit log uses for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine {
    /// `deploy.allow[0]`.
    pub label: String,
    pub report: RuleReport,
    /// This rule is the one the decision names.
    pub decides: bool,
}

/// What the gateway would do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Proxied with identity headers; `rule` is the allow rule that admitted it.
    Allowed { rule: String },
    /// Shadow mode: the rules refuse it (`rule` is the deny rule, if one matched), but it
    /// is proxied and logged as `would_deny`.
    WouldDeny { rule: Option<String> },
    /// A public route: proxied as is, no token needed.
    Public,
    /// Refused with this reason; `rule` is the deny rule for `policy_denied`, and `why`
    /// one line for the operator.
    Refused {
        reason: Reason,
        rule: Option<String>,
        why: String,
    },
}

/// Everything explain found, in the order the gateway would go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Unix seconds the time checks used.
    pub now: u64,
    pub alg: Option<String>,
    pub kid: Option<String>,
    pub token_bytes: usize,
    pub method: String,
    pub host: Option<String>,
    /// Normalised, or as given when normalisation refused it.
    pub path: String,
    pub route: Option<RouteSummary>,
    /// With no route: one line per configured route, to show what was missed.
    pub routes_hint: Vec<String>,
    pub checks: Vec<Check>,
    pub rules: Vec<RuleLine>,
    /// False when a check refuses the token first: the rules are then shown for
    /// information only.
    pub rules_reached: bool,
    pub decision: Decision,
    /// The identity headers the upstream would receive; `None` when nothing is proxied
    /// or the route is public (no identity headers are added).
    pub headers: Option<Vec<(String, String)>>,
}

impl Explanation {
    fn new(token: &DecodedToken, target: &RequestTarget, now: u64, decision: Decision) -> Self {
        Explanation {
            now,
            alg: token.header_text("alg").map(str::to_owned),
            kid: token.header_text("kid").map(str::to_owned),
            token_bytes: token.len(),
            method: target.method.to_string(),
            host: target.host.clone(),
            path: target.path.clone(),
            route: None,
            routes_hint: Vec::new(),
            checks: Vec::new(),
            rules: Vec::new(),
            rules_reached: false,
            decision,
            headers: None,
        }
    }
}

/// Replays SPEC §3 for `target` carrying `token` under `config`, at `now`, without the
/// signature check. Never fails: every problem is part of the explanation.
pub fn explain_request(
    config: &Config,
    token: &DecodedToken,
    target: &RequestTarget,
    revocations: &RevocationSource,
    now: u64,
) -> Explanation {
    let refused = |reason, why: String| Decision::Refused {
        reason,
        rule: None,
        why,
    };
    // A placeholder: every return below sets the decision it reached.
    let mut explanation = Explanation::new(token, target, now, Decision::Public);
    let path = match normalise_path(&target.path) {
        Ok(path) => path.into_owned(),
        Err(reason) => {
            explanation.decision = refused(
                reason,
                "the path holds %2F, %5C, %2E or NUL, or does not start with /".to_owned(),
            );
            return explanation;
        }
    };
    explanation.path.clone_from(&path);
    let table = RouteTable::new(&config.routes);
    let route = table
        .lookup(target.host.as_deref(), &path, &target.method)
        .and_then(|index| config.routes.get(index));
    let Some(route) = route else {
        explanation.routes_hint = config.routes.iter().map(route_hint).collect();
        explanation.decision = refused(
            Reason::NoRoute,
            "no route matches this host, path and method".to_owned(),
        );
        return explanation;
    };
    let Some(auth) = &route.auth else {
        explanation.route = Some(RouteSummary {
            name: route.name.clone(),
            auth: None,
        });
        explanation.decision = Decision::Public;
        return explanation;
    };
    let Some(issuer) = config.issuers.get(auth.issuer) else {
        // Validation guarantees the index; an impossible config still gets an answer.
        explanation.decision = refused(
            Reason::KeysUnavailable,
            "the route names no known issuer".to_owned(),
        );
        return explanation;
    };
    explanation.route = Some(RouteSummary {
        name: route.name.clone(),
        auth: Some(AuthSummary {
            issuer: issuer.name.clone(),
            issuer_url: issuer.url.clone(),
            audience: auth.audience.clone(),
            mode: auth.mode,
            strip_authorization: auth.strip_authorization,
        }),
    });
    explanation.checks = token_checks(config, issuer, auth, token, now);
    explanation
        .checks
        .push(revocation_check(revocations, &token.claims, now));
    let policy_decision = policy::evaluate(auth, &token.claims);
    explanation.rules = policy::explain(auth, &token.claims)
        .into_iter()
        .map(|report| RuleLine {
            label: report.rule.label(&route.name),
            decides: false,
            report,
        })
        .collect();
    if let Some(check) = explanation
        .checks
        .iter()
        .find(|check| check.verdict == Verdict::Fail)
    {
        let reason = check.reason.unwrap_or(Reason::MalformedToken);
        explanation.decision = refused(reason, format!("{}: {}", check.name, check.detail));
        return explanation;
    }
    explanation.rules_reached = true;
    let deciding = policy_decision.rule().map(|rule| rule.label(&route.name));
    for line in &mut explanation.rules {
        line.decides = deciding.as_deref() == Some(line.label.as_str());
    }
    if !policy_decision.is_allowed() && auth.mode == Mode::Enforce {
        explanation.decision = Decision::Refused {
            reason: Reason::PolicyDenied,
            rule: deciding,
            why: policy_why(&policy_decision, &explanation.rules),
        };
        return explanation;
    }
    match identity_headers(issuer, &token.claims, &route.name) {
        Ok(headers) => {
            explanation.headers = Some(
                headers
                    .iter()
                    .map(|(name, value)| {
                        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        (name.as_str().to_owned(), value)
                    })
                    .collect(),
            );
            explanation.decision = match (policy_decision, deciding) {
                (PolicyDecision::Allowed { .. }, Some(rule)) => Decision::Allowed { rule },
                (PolicyDecision::DeniedByRule { .. }, rule) => Decision::WouldDeny { rule },
                _ => Decision::WouldDeny { rule: None },
            };
        }
        Err(reason) => {
            explanation.decision = refused(reason, unforwardable_why(issuer, token, route));
        }
    }
    explanation
}

/// One line naming what a route matches, for the no-route case.
fn route_hint(route: &RouteConfig) -> String {
    let host = match &route.host {
        crate::config::HostMatch::Any => "any host".to_owned(),
        crate::config::HostMatch::Exact(host) => host.clone(),
        crate::config::HostMatch::Suffix(suffix) => format!("*{suffix}"),
    };
    let methods = route.methods.as_ref().map_or_else(
        || "any method".to_owned(),
        |methods| {
            let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
            names.join(",")
        },
    );
    format!("{}: {host} {} {methods}", route.name, route.path_prefix)
}

/// The offline part of SPEC §3 steps 5–6, in the gateway's order: size, JOSE header,
/// (signature: skipped), claim types, `iss`, `aud`, `exp`, `nbf`, `iat`, `max_token_age`.
fn token_checks(
    config: &Config,
    issuer: &IssuerConfig,
    auth: &RouteAuth,
    token: &DecodedToken,
    now: u64,
) -> Vec<Check> {
    let mut checks = Vec::with_capacity(12);
    let limit = config.server.max_token_bytes;
    checks.push(if token.len() > limit {
        Check::fail(
            "size",
            Reason::TokenTooLarge,
            format!("{} bytes, over max_token_bytes {limit}", token.len()),
        )
    } else {
        Check::pass(
            "size",
            format!("{} bytes, within max_token_bytes {limit}", token.len()),
        )
    });
    checks.push(header_check(issuer, token));
    checks.push(Check::not_checked(
        "signature",
        match token.header_text("kid") {
            Some(kid) => format!("NOT checked: key {kid:?} is not fetched offline"),
            None => "NOT checked: the issuer's keys are not fetched offline".to_owned(),
        },
    ));
    let times = claim_times(&token.payload);
    checks.push(match &times {
        Ok(_) => Check::pass(
            "claims",
            "iss, sub, jti, aud, exp, iat, nbf have valid JSON types".to_owned(),
        ),
        Err(problem) => Check::fail("claims", Reason::MalformedToken, problem.clone()),
    });
    let iss = token.claims.text("iss");
    checks.push(if iss == Some(issuer.url.as_str()) {
        Check::pass("iss", format!("{:?} is the issuer's URL", issuer.url))
    } else {
        Check::fail(
            "iss",
            Reason::WrongIssuer,
            format!(
                "{} is not the issuer's URL {:?}",
                shown(token.claims.get("iss")),
                issuer.url
            ),
        )
    });
    let aud = token.claims.get("aud");
    let audience_matches = match aud {
        Some(ClaimValue::Text(aud)) => aud.as_ref() == auth.audience,
        Some(ClaimValue::List(auds)) => auds.iter().any(|aud| aud.as_ref() == auth.audience),
        _ => false,
    };
    checks.push(if audience_matches {
        let verb = match aud {
            Some(ClaimValue::List(_)) => "includes",
            _ => "is",
        };
        Check::pass("aud", format!("{} {verb} the route's audience", shown(aud)))
    } else {
        Check::fail(
            "aud",
            Reason::WrongAudience,
            format!(
                "{} does not contain the route's audience {:?}",
                shown(aud),
                auth.audience
            ),
        )
    });
    match times {
        Ok(times) => checks.extend(time_checks(&times, issuer, now)),
        Err(_) => {
            for name in ["exp", "nbf", "iat", "max_token_age"] {
                checks.push(Check::not_checked(
                    name,
                    "not checked: the claims are malformed".to_owned(),
                ));
            }
        }
    }
    checks
}

/// A claim as the report shows it: quoted (so control characters in a hostile token are
/// escaped, never sent to the terminal raw), or `(absent)`.
fn shown(value: Option<&ClaimValue>) -> String {
    match value {
        Some(ClaimValue::Text(text)) => format!("{text:?}"),
        Some(ClaimValue::List(items)) => format!("{items:?}"),
        Some(ClaimValue::Other) => "(null or an object)".to_owned(),
        None => "(absent)".to_owned(),
    }
}

/// The gateway's own header checks (`verify::parse_header`) for the verdict; the detail
/// says which rule the header broke.
fn header_check(issuer: &IssuerConfig, token: &DecodedToken) -> Check {
    let allowed: Vec<String> = issuer
        .algorithms
        .iter()
        .map(|alg| format!("{alg:?}"))
        .collect();
    let allowed = allowed.join(", ");
    let alg = token.header.get("alg");
    match parse_header(&token.compact, &issuer.algorithms) {
        Ok((header, _)) => Check::pass(
            "header",
            format!("alg {:?} is allowed ([{allowed}])", header.alg),
        ),
        Err(Reason::AlgNotAllowed) => Check::fail(
            "header",
            Reason::AlgNotAllowed,
            format!(
                "alg {} is not in the issuer's algorithms [{allowed}]",
                alg.map_or_else(|| "(absent)".to_owned(), Value::to_string)
            ),
        ),
        Err(reason) => {
            let detail = if !matches!(alg, Some(Value::String(_))) {
                "the header has no alg string"
            } else if token.header.contains_key("crit") {
                "the header has crit, which jobgate refuses"
            } else {
                "the header is malformed (e.g. a member appears twice)"
            };
            Check::fail("header", reason, detail.to_owned())
        }
    }
}

/// `exp`, `iat` and `nbf` as whole seconds, once their types are known good.
/// SPEC §3 step 6's time rules with the issuer's leeway, exactly as
/// `verify::check_request` applies them (a unit test holds the two together).
fn time_checks(times: &TokenTimes, issuer: &IssuerConfig, now: u64) -> Vec<Check> {
    let leeway = issuer.leeway.as_secs();
    let slack = format!("leeway {}", duration_text(leeway));
    let mut checks = Vec::with_capacity(4);
    checks.push(if now >= times.exp.saturating_add(leeway) {
        Check::fail(
            "exp",
            Reason::Expired,
            format!("expired {} ({slack})", relative(times.exp, now)),
        )
    } else if now >= times.exp {
        Check::pass(
            "exp",
            format!("expired {}, within the {slack}", relative(times.exp, now)),
        )
    } else {
        Check::pass("exp", format!("expires {}", relative(times.exp, now)))
    });
    checks.push(match times.nbf {
        None => Check::pass("nbf", "absent".to_owned()),
        Some(nbf) if now.saturating_add(leeway) < nbf => Check::fail(
            "nbf",
            Reason::NotYetValid,
            format!("valid only from {} ({slack})", relative(nbf, now)),
        ),
        Some(nbf) => Check::pass("nbf", format!("valid since {}", relative(nbf, now))),
    });
    checks.push(if times.iat > now.saturating_add(leeway) {
        Check::fail(
            "iat",
            Reason::IssuedInFuture,
            format!("issued {} ({slack})", relative(times.iat, now)),
        )
    } else {
        Check::pass("iat", format!("issued {}", relative(times.iat, now)))
    });
    checks.push(match issuer.max_token_age {
        None => Check::pass(
            "max_token_age",
            "not set on the issuer: no age limit".to_owned(),
        ),
        Some(max_age) => {
            let max_age = max_age.as_secs();
            let age = duration_text(now.saturating_sub(times.iat));
            if now > times.iat.saturating_add(max_age).saturating_add(leeway) {
                Check::fail(
                    "max_token_age",
                    Reason::Expired,
                    format!("{age} old, older than {} ({slack})", duration_text(max_age)),
                )
            } else {
                Check::pass(
                    "max_token_age",
                    format!("{age} old, within {}", duration_text(max_age)),
                )
            }
        }
    });
    checks
}

/// SPEC §6: an unexpired entry whose conditions all match refuses with 403 `revoked`.
fn revocation_check(source: &RevocationSource, claims: &Claims, now: u64) -> Check {
    let name = "revocation";
    match source {
        RevocationSource::None => Check::pass(name, "no revocation file configured".to_owned()),
        RevocationSource::Missing(path) => Check::pass(
            name,
            format!("{} is missing: an empty list", path.display()),
        ),
        RevocationSource::Unusable(path, error) => Check::not_checked(
            name,
            format!(
                "{} cannot be used ({error}); serve keeps its previous list, empty at start",
                path.display()
            ),
        ),
        RevocationSource::Loaded(path, list) => {
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            match list.find(claims, now) {
                Some(entry) => {
                    let index = list
                        .entries
                        .iter()
                        .position(|candidate| std::ptr::eq(candidate, entry))
                        .unwrap_or(0);
                    Check::fail(
                        name,
                        Reason::Revoked,
                        format!(
                            "matches revoke[{index}] of {} (reason {:?})",
                            path.display(),
                            entry.reason
                        ),
                    )
                }
                None => Check::pass(
                    name,
                    format!(
                        "no entry of {} matches ({} entries)",
                        path.display(),
                        list.entries.len()
                    ),
                ),
            }
        }
    }
}

/// Why the rules refused: the deny rule that matched, or each allow rule's failing claims.
fn policy_why(decision: &PolicyDecision, rules: &[RuleLine]) -> String {
    if let PolicyDecision::DeniedByRule { .. } = decision {
        return "a deny rule matched".to_owned();
    }
    let allow: Vec<String> = rules
        .iter()
        .filter(|line| line.report.rule.kind == RuleKind::Allow)
        .map(|line| {
            let failing: Vec<&str> = line
                .report
                .conditions
                .iter()
                .filter(|condition| !condition.matched)
                .map(|condition| condition.claim.as_str())
                .collect();
            format!("{} fails on {}", line.label, failing.join(", "))
        })
        .collect();
    if allow.is_empty() {
        "no allow rule matched: the route has none, so it admits nobody".to_owned()
    } else {
        format!("no allow rule matched ({})", allow.join("; "))
    }
}

/// Names the header whose claim cannot be forwarded, by asking the gateway's own
/// `identity_headers` one table entry at a time.
fn unforwardable_why(issuer: &IssuerConfig, token: &DecodedToken, route: &RouteConfig) -> String {
    for (header, claim) in &issuer.headers {
        let mut single = issuer.clone();
        single.headers = vec![(header.clone(), claim.clone())];
        if identity_headers(&single, &token.claims, &route.name).is_err() {
            return format!(
                "claim {claim} (header {header}) holds a byte that cannot be a header value"
            );
        }
    }
    "iss or sub holds a byte that cannot be a header value".to_owned()
}

/// `9m 12s`, `2h 5m`, `45s`: the two largest units, for reading at a glance.
pub fn duration_text(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::with_capacity(2);
    let mut rest = seconds;
    for (size, unit) in UNITS {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 || (!parts.is_empty() && rest == 0) {
            break;
        }
    }
    parts.join(" ")
}

/// `in 9m 12s` or `3h 2m ago` (or `now`), of a Unix time seen from `now`.
pub fn relative(time: u64, now: u64) -> String {
    if time > now {
        format!("in {}", duration_text(time - now))
    } else if time < now {
        format!("{} ago", duration_text(now - time))
    } else {
        "now".to_owned()
    }
}

/// `2026-11-26T02:00:00Z`: the instant the time checks used, readable next to audit lines.
fn timestamp(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.min(253_402_300_799));
    crate::clock::format_rfc3339_millis(time).replace(".000Z", "Z")
}

// ---------------------------------------------------------------------------------------
// Output.
// ---------------------------------------------------------------------------------------

/// The one-line decision: what an operator reads first.
pub fn decision_line(explanation: &Explanation) -> String {
    let route = explanation
        .route
        .as_ref()
        .map_or("", |route| route.name.as_str());
    let shadow = explanation
        .route
        .as_ref()
        .and_then(|route| route.auth.as_ref())
        .is_some_and(|auth| auth.mode == Mode::Shadow);
    match &explanation.decision {
        Decision::Allowed { rule } if shadow => {
            format!("would be ALLOWED by {rule} (route in shadow mode)")
        }
        Decision::Allowed { rule } => format!("would be ALLOWED by {rule}"),
        Decision::WouldDeny { rule } => {
            let by = rule.as_ref().map_or_else(
                || "no allow rule matched".to_owned(),
                |rule| format!("by {rule}"),
            );
            format!(
                "would be let through in SHADOW mode (would_deny, policy_denied: {by}); \
                 in enforce mode: DENIED (403 policy_denied)"
            )
        }
        Decision::Public => {
            format!("PUBLIC route {route}: proxied as is, no token needed")
        }
        Decision::Refused { reason, rule, why } => {
            let verb = if matches!(reason.status(), 401 | 403) {
                "DENIED"
            } else {
                "REFUSED"
            };
            let head = format!("{verb} ({} {})", reason.status(), reason.as_str());
            match (reason, rule) {
                (_, Some(rule)) => format!("{head} by {rule}"),
                (Reason::PolicyDenied, None) => format!("{head}: {why}"),
                (Reason::NoRoute, None) => {
                    format!("no route: {} {}", reason.status(), reason.as_str())
                }
                _ => format!("{head}: {why}"),
            }
        }
    }
}

/// The condition rows of every rule, with columns aligned across all rules.
pub fn rules_text(rules: &[RuleLine], reached: bool) -> String {
    let mut out = String::new();
    if rules.is_empty() {
        out.push_str("  (none: a route without allow rules admits nobody)\n");
        return out;
    }
    let headings = ["CLAIM", "EXPECTED", "ACTUAL"];
    let mut widths = headings.map(|heading| heading.chars().count());
    for condition in rules.iter().flat_map(|line| &line.report.conditions) {
        let cells = [
            condition.claim.as_str(),
            condition.expected.as_str(),
            condition.actual.as_deref().unwrap_or("(absent)"),
        ];
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let row = |out: &mut String, cells: [&str; 3], mark: &str| {
        let [claim, expected, actual] = cells;
        let [cw, ew, aw] = widths;
        let line = format!("      {claim:<cw$}  {expected:<ew$}  {actual:<aw$}  {mark}");
        out.push_str(line.trim_end());
        out.push('\n');
    };
    row(&mut out, headings, "");
    for line in rules {
        let verdict = match (line.report.matched, line.report.rule.kind) {
            (true, RuleKind::Deny) => "MATCHES: denies",
            (true, RuleKind::Allow) => "MATCHES: allows",
            (false, _) => "no match",
        };
        let decides = if line.decides && reached {
            "  <- decides"
        } else {
            ""
        };
        let _ = writeln!(out, "  {}: {verdict}{decides}", line.label);
        if line.report.conditions.is_empty() {
            out.push_str("      (no conditions: matches every verified token)\n");
        }
        for condition in &line.report.conditions {
            let actual = condition.actual.as_deref().unwrap_or("(absent)");
            let mark = if condition.matched { "✓" } else { "✗" };
            row(
                &mut out,
                [&condition.claim, &condition.expected, actual],
                mark,
            );
        }
    }
    out
}

/// The checks, one per line: verdict, name, detail.
pub fn checks_text(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let _ = writeln!(
            out,
            "  {}  {:<width$}  {}",
            check.verdict.label(),
            check.name,
            check.detail
        );
    }
    out
}

/// The human report.
pub fn render_text(explanation: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "!! {SIGNATURE_WARNING}");
    let _ = writeln!(out, "!! {FORGERY_NOTE}");
    out.push('\n');
    let quoted = |value: &Option<String>| {
        value
            .as_ref()
            .map_or_else(|| "(absent)".to_owned(), |value| format!("{value:?}"))
    };
    let _ = writeln!(
        out,
        "token     alg {}, kid {}, {} bytes",
        quoted(&explanation.alg),
        quoted(&explanation.kid),
        explanation.token_bytes
    );
    let _ = writeln!(
        out,
        "request   {} {} (host {})",
        explanation.method,
        explanation.path,
        explanation.host.as_deref().unwrap_or("none")
    );
    match &explanation.route {
        None if matches!(
            explanation.decision,
            Decision::Refused {
                reason: Reason::BadPath,
                ..
            }
        ) =>
        {
            let _ = writeln!(out, "route     not looked up: the path is refused first");
        }
        None => {
            let _ = writeln!(out, "route     none");
            for hint in &explanation.routes_hint {
                let _ = writeln!(out, "          configured: {hint}");
            }
        }
        Some(RouteSummary { name, auth: None }) => {
            let _ = writeln!(out, "route     {name} (public: auth = false)");
        }
        Some(RouteSummary {
            name,
            auth: Some(auth),
        }) => {
            let mode = match auth.mode {
                Mode::Enforce => "enforce",
                Mode::Shadow => "SHADOW (refusals by the rules are logged, not enforced)",
            };
            let _ = writeln!(
                out,
                "route     {name}: issuer {} ({}), audience {}, mode {mode}",
                auth.issuer, auth.issuer_url, auth.audience
            );
        }
    }
    if !explanation.checks.is_empty() {
        let _ = writeln!(
            out,
            "\nchecks (offline, at {} = {})",
            explanation.now,
            timestamp(explanation.now)
        );
        out.push_str(&checks_text(&explanation.checks));
    }
    if explanation
        .route
        .as_ref()
        .is_some_and(|route| route.auth.is_some())
    {
        let note = if explanation.rules_reached {
            ""
        } else {
            "; not reached, a check above refuses first"
        };
        let _ = writeln!(out, "\nrules (deny rules first, then allow rules{note})");
        out.push_str(&rules_text(&explanation.rules, explanation.rules_reached));
    }
    let _ = writeln!(out, "\ndecision  {}", decision_line(explanation));
    if matches!(
        explanation.decision,
        Decision::Allowed { .. } | Decision::WouldDeny { .. }
    ) {
        let _ = writeln!(
            out,
            "{:10}(if the signature verifies with the issuer's keys, which explain cannot check)",
            ""
        );
    }
    match &explanation.headers {
        Some(headers) => {
            let _ = writeln!(out, "\nupstream headers");
            for (name, value) in headers {
                let _ = writeln!(out, "  {name}: {value}");
            }
            let strip = explanation
                .route
                .as_ref()
                .and_then(|route| route.auth.as_ref())
                .is_some_and(|auth| auth.strip_authorization);
            let _ = writeln!(
                out,
                "  (Authorization {})",
                if strip {
                    "removed: strip_authorization = true"
                } else {
                    "passed on: strip_authorization = false"
                }
            );
        }
        None if explanation.decision == Decision::Public => {
            let _ = writeln!(
                out,
                "upstream  no identity headers; Authorization passed as is"
            );
        }
        None => {
            let _ = writeln!(out, "upstream  nothing: the request is refused");
        }
    }
    out
}

fn kind_name(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Allow => "allow",
        RuleKind::Deny => "deny",
    }
}

/// The same content as [`render_text`], as one JSON object for scripts.
pub fn render_json(explanation: &Explanation) -> Value {
    let route = explanation.route.as_ref().map(|route| match &route.auth {
        None => json!({"name": route.name, "public": true}),
        Some(auth) => json!({
            "name": route.name,
            "public": false,
            "issuer": auth.issuer,
            "issuer_url": auth.issuer_url,
            "audience": auth.audience,
            "mode": match auth.mode { Mode::Enforce => "enforce", Mode::Shadow => "shadow" },
            "strip_authorization": auth.strip_authorization,
        }),
    });
    let checks: Vec<Value> = explanation
        .checks
        .iter()
        .map(|check| {
            json!({
                "name": check.name,
                "result": check.verdict.json_name(),
                "detail": check.detail,
                "reason": check.reason.map(Reason::as_str),
            })
        })
        .collect();
    let rules: Vec<Value> = explanation
        .rules
        .iter()
        .map(|line| {
            let conditions: Vec<Value> = line
                .report
                .conditions
                .iter()
                .map(|condition| {
                    json!({
                        "claim": condition.claim,
                        "expected": condition.expected,
                        "actual": condition.actual,
                        "matched": condition.matched,
                    })
                })
                .collect();
            json!({
                "rule": line.label,
                "kind": kind_name(line.report.rule.kind),
                "matched": line.report.matched,
                "decides": line.decides && explanation.rules_reached,
                "conditions": conditions,
            })
        })
        .collect();
    let (outcome, status, reason, rule) = match &explanation.decision {
        Decision::Allowed { rule } => ("allowed", None, None, Some(rule.clone())),
        Decision::WouldDeny { rule } => (
            "would_deny",
            None,
            Some(Reason::PolicyDenied.as_str()),
            rule.clone(),
        ),
        Decision::Public => ("public", None, None, None),
        Decision::Refused { reason, rule, .. } => (
            reason.outcome().as_str(),
            Some(reason.status()),
            Some(reason.as_str()),
            rule.clone(),
        ),
    };
    let headers = explanation.headers.as_ref().map(|headers| {
        headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect::<Map<String, Value>>()
    });
    json!({
        "signature_checked": false,
        "issuer_contacted": false,
        "warning": format!("{SIGNATURE_WARNING} {FORGERY_NOTE}"),
        "now": explanation.now,
        "token": {
            "alg": explanation.alg,
            "kid": explanation.kid,
            "bytes": explanation.token_bytes,
        },
        "request": {
            "method": explanation.method,
            "path": explanation.path,
            "host": explanation.host,
        },
        "route": route,
        "checks": checks,
        "rules": rules,
        "rules_reached": explanation.rules_reached,
        "decision": {
            "outcome": outcome,
            "proxied": status.is_none(),
            "status": status,
            "reason": reason,
            "rule": rule,
            "summary": decision_line(explanation),
        },
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::auth::verify::{VerifiedToken, check_request};

    const NOW: u64 = 1_764_122_400;
    const ISS: &str = "https://token.actions.githubusercontent.com";
    const AUD: &str = "https://deploy.internal.example";

    const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"

[[issuer]]
name = "github"
url = "https://token.actions.githubusercontent.com"
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
ref = ["refs/heads/main", "refs/tags/v*"]

[[route]]
name = "shadowed"
path_prefix = "/shadow"
upstream = "http://127.0.0.1:9"
audience = "https://deploy.internal.example"
mode = "shadow"

[[route.allow]]
repository_owner = "acme"

[[route]]
name = "health"
path_prefix = "/healthz"
upstream = "http://127.0.0.1:9"
auth = false
"#;

    fn config() -> Config {
        crate::config::parse(CONFIG, Path::new("explain-test.toml")).expect("test config")
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn payload(overrides: Value) -> Value {
        let mut claims = json!({
            "iss": ISS, "aud": AUD, "sub": "repo:acme/app:ref:refs/heads/main",
            "repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
            "runner_environment": "github-hosted", "run_id": "42", "check_run_id": "7",
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 240,
        });
        if let (Some(claims), Some(overrides)) = (claims.as_object_mut(), overrides.as_object()) {
            for (name, value) in overrides {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    fn token(overrides: Value) -> DecodedToken {
        let text = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "RS256", "kid": "k"})),
            b64(&payload(overrides))
        );
        decode_token(&text).expect("test token decodes")
    }

    fn explain(overrides: Value, method: &str, url: &str) -> Explanation {
        let target = RequestTarget::parse(method, url).expect("test target");
        explain_request(
            &config(),
            &token(overrides),
            &target,
            &RevocationSource::None,
            NOW,
        )
    }

    fn deploy(overrides: Value) -> Explanation {
        explain(
            overrides,
            "POST",
            "https://deploy.internal.example/v1/deploy",
        )
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(60), "1m");
        assert_eq!(duration_text(552), "9m 12s");
        assert_eq!(duration_text(7_500), "2h 5m");
        assert_eq!(duration_text(86_400 * 3 + 7_200 + 5), "3d 2h");
        assert!(!duration_text(u64::MAX).is_empty());
        assert_eq!(relative(NOW + 90, NOW), "in 1m 30s");
        assert_eq!(relative(NOW - 3_600, NOW), "1h ago");
        assert_eq!(relative(NOW, NOW), "now");
    }

    #[test]
    fn tokens_decode_without_verification_and_errors_never_echo_them() {
        let decoded = token(json!({}));
        assert_eq!(decoded.header_text("alg"), Some("RS256"));
        assert_eq!(decoded.claims.text("repository"), Some("acme/app"));
        let bearer = format!("  Bearer {}\n", decoded.compact);
        assert_eq!(
            decode_token(&bearer).expect("bearer prefix").compact,
            decoded.compact
        );
        let secret = "c2VjcmV0LXNlY3JldA";
        for bad in [
            String::new(),
            secret.to_owned(),
            format!("{secret}.{secret}"),
            format!("{secret}.{secret}.{secret}"),
            format!("{}.W10.x", b64(&json!({"alg": "RS256"}))),
            format!("{}.{}.x", b64(&json!(["alg"])), b64(&json!({}))),
            format!("a=.{}.x", b64(&json!({}))),
        ] {
            let error = decode_token(&bad).expect_err("undecodable");
            assert!(!error.contains(secret), "{error}");
        }
    }

    #[test]
    fn request_targets_are_urls_or_paths() {
        let full = RequestTarget::parse("post", "https://Deploy.internal.example:8443/v1/a?x=1")
            .expect("full URL");
        assert_eq!(full.method, Method::POST);
        assert_eq!(full.host.as_deref(), Some("Deploy.internal.example"));
        assert_eq!(full.path, "/v1/a");
        let bare = RequestTarget::parse("GET", "/v1/a/../b").expect("path");
        assert_eq!(bare.host, None);
        assert_eq!(bare.path, "/v1/a/../b");
        for url in ["not a url", "deploy.internal.example/v1", ""] {
            assert!(RequestTarget::parse("GET", url).is_err(), "{url:?}");
        }
        assert!(RequestTarget::parse("B AD", "/").is_err());
    }

    /// explain's time checks must refuse exactly when, and why, the gateway does.
    #[test]
    fn time_checks_agree_with_the_gateway() {
        let config = config();
        let base = Arc::clone(&config.issuers[0]);
        let mut without_max_age = (*base).clone();
        without_max_age.max_token_age = None;
        let claims = Claims::from_json_object(json!({"aud": AUD}).as_object().expect("object"));
        let now = NOW;
        let offsets: [i64; 9] = [-2_000, -961, -960, -61, -60, -1, 0, 60, 61];
        let at = |offset: i64| now.saturating_add_signed(offset);
        for issuer in [&*base, &without_max_age] {
            for exp in offsets {
                for iat in offsets {
                    for nbf in [None, Some(-10), Some(60), Some(61)] {
                        let mut verified =
                            VerifiedToken::for_tests(claims.clone(), None, at(exp), at(iat));
                        verified.nbf = nbf.map(at);
                        let gateway = check_request(&verified, issuer, AUD, now).err();
                        let times = TokenTimes {
                            exp: at(exp),
                            iat: at(iat),
                            nbf: nbf.map(at),
                        };
                        let ours = time_checks(&times, issuer, now)
                            .into_iter()
                            .find(|check| check.verdict == Verdict::Fail)
                            .and_then(|check| check.reason);
                        assert_eq!(ours, gateway, "exp {exp} iat {iat} nbf {nbf:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn claim_types_follow_the_gateway() {
        let types = |overrides: Value| {
            claim_times(payload(overrides).as_object().expect("object")).map(|_| ())
        };
        assert_eq!(types(json!({})), Ok(()));
        assert_eq!(types(json!({"aud": ["a", "b"], "exp": 1.5e9})), Ok(()));
        assert!(types(json!({"exp": null})).is_err());
        assert!(types(json!({"iat": "1"})).is_err());
        assert!(types(json!({"nbf": "soon"})).is_err());
        assert!(types(json!({"aud": [1]})).is_err());
        assert!(types(json!({"sub": 7})).is_err());
    }

    #[test]
    fn an_allowed_request_names_its_rule_and_headers() {
        let explanation = deploy(json!({}));
        assert_eq!(
            explanation.decision,
            Decision::Allowed {
                rule: "deploy.allow[0]".into()
            }
        );
        assert!(explanation.rules_reached);
        let decides: Vec<&str> = explanation
            .rules
            .iter()
            .filter(|line| line.decides)
            .map(|line| line.label.as_str())
            .collect();
        assert_eq!(decides, ["deploy.allow[0]"]);
        let headers = explanation.headers.as_ref().expect("headers");
        assert!(headers.contains(&("x-jobgate-route".into(), "deploy".into())));
        assert!(headers.contains(&("x-github-repository".into(), "acme/app".into())));
        assert_eq!(
            decision_line(&explanation),
            "would be ALLOWED by deploy.allow[0]"
        );
    }

    #[test]
    fn refusals_name_the_first_failing_step() {
        let denied = deploy(json!({"runner_environment": "self-hosted"}));
        assert_eq!(
            decision_line(&denied),
            "DENIED (403 policy_denied) by deploy.deny[0]"
        );
        assert_eq!(denied.headers, None);
        let unmatched = deploy(json!({"ref": "refs/heads/feature"}));
        assert_eq!(
            decision_line(&unmatched),
            "DENIED (403 policy_denied): no allow rule matched (deploy.allow[0] fails on ref)"
        );
        let both = deploy(json!({"aud": "other", "exp": NOW - 3_600}));
        assert!(!both.rules_reached);
        assert!(
            decision_line(&both).starts_with("DENIED (401 wrong_audience): aud:"),
            "{}",
            decision_line(&both)
        );
        let expired = deploy(json!({"exp": NOW - 61}));
        assert!(decision_line(&expired).starts_with("DENIED (401 expired): exp:"));
        let old = deploy(json!({"iat": NOW - 2_000, "nbf": null}));
        assert!(decision_line(&old).starts_with("DENIED (401 expired): max_token_age:"));
        let wrong_iss = deploy(json!({"iss": "https://evil.example"}));
        assert!(decision_line(&wrong_iss).starts_with("DENIED (401 wrong_issuer)"));
        let unforwardable = deploy(json!({"ref": "refs/tags/v1\r\nX-Evil: 1"}));
        assert_eq!(
            decision_line(&unforwardable),
            "DENIED (401 unforwardable_claim): claim ref (header x-github-ref) holds a byte \
             that cannot be a header value"
        );
    }

    #[test]
    fn routing_outcomes_need_no_checks() {
        let none = explain(
            json!({}),
            "GET",
            "https://deploy.internal.example/v1/deploy",
        );
        assert_eq!(decision_line(&none), "no route: 404 no_route");
        assert!(none.checks.is_empty());
        assert_eq!(none.routes_hint.len(), 3);
        let bad = explain(json!({}), "POST", "/v1/deploy/%2e%2e/x");
        assert!(decision_line(&bad).starts_with("REFUSED (400 bad_path)"));
        let asterisk = explain(json!({}), "OPTIONS", "*");
        assert!(decision_line(&asterisk).starts_with("REFUSED (400 bad_path)"));
        let public = explain(json!({}), "GET", "/healthz");
        assert_eq!(public.decision, Decision::Public);
        let resolved = explain(json!({}), "GET", "/shadow/../healthz/./x");
        assert_eq!(resolved.path, "/healthz/x");
        assert_eq!(resolved.decision, Decision::Public);
    }

    #[test]
    fn shadow_mode_lets_a_refused_request_through_and_says_so() {
        let shadowed = explain(json!({"repository_owner": "evil"}), "GET", "/shadow/x");
        assert_eq!(shadowed.decision, Decision::WouldDeny { rule: None });
        assert!(shadowed.headers.is_some());
        assert!(decision_line(&shadowed).contains("SHADOW"));
        let allowed = explain(json!({}), "GET", "/shadow/x");
        assert_eq!(
            decision_line(&allowed),
            "would be ALLOWED by shadowed.allow[0] (route in shadow mode)"
        );
        let expired = explain(json!({"exp": NOW - 3_600}), "GET", "/shadow/x");
        assert!(
            decision_line(&expired).starts_with("DENIED (401 expired)"),
            "token checks are enforced in shadow mode too"
        );
    }

    #[test]
    fn revocation_entries_refuse_before_the_rules() {
        let list = RevocationList::parse("[[revoke]]\ncheck_run_id = \"7\"\nreason = \"leak\"\n")
            .expect("list");
        let source = RevocationSource::Loaded("revoked.toml".into(), list);
        let target = RequestTarget::parse("POST", "https://deploy.internal.example/v1/deploy")
            .expect("target");
        let explanation = explain_request(&config(), &token(json!({})), &target, &source, NOW);
        assert_eq!(
            decision_line(&explanation),
            "DENIED (403 revoked): revocation: matches revoke[0] of revoked.toml (reason \"leak\")"
        );
        let unusable = RevocationSource::Unusable("r.toml".into(), "bad".into());
        let explanation = explain_request(&config(), &token(json!({})), &target, &unusable, NOW);
        assert!(explanation.decision != Decision::Public);
        assert!(
            explanation
                .checks
                .iter()
                .any(|check| check.name == "revocation" && check.verdict == Verdict::NotChecked)
        );
        assert_eq!(
            one_line(
                "TOML parse error at line 1, column 6\n  |\n1 | x = [\n  |      ^\nunclosed array\n"
            ),
            "TOML parse error at line 1, column 6: unclosed array"
        );
    }

    #[test]
    fn text_opens_with_the_warning_and_aligns_conditions() {
        let text = render_text(&deploy(json!({"ref": "refs/heads/feature"})));
        assert!(text.starts_with("!! SIGNATURE NOT CHECKED"), "{text}");
        assert!(text.contains("does not contact the issuer"));
        assert!(!text.contains("  FAIL  "), "only the rules refuse: {text}");
        let marks: Vec<usize> = text
            .lines()
            .filter_map(|line| {
                line.char_indices()
                    .find(|(_, c)| *c == '✓' || *c == '✗')
                    .map(|(at, _)| line[..at].chars().count())
            })
            .collect();
        assert_eq!(marks.len(), 3, "{text}");
        assert!(marks.windows(2).all(|pair| pair[0] == pair[1]), "{text}");
        assert!(text.contains(r#""refs/heads/feature""#));
        assert!(text.contains("upstream  nothing: the request is refused"));
        assert!(text.contains("PASS  aud"));
    }

    #[test]
    fn rules_text_shows_absent_claims_and_empty_rules() {
        let text = render_text(&deploy(json!({"ref": null})));
        assert!(text.contains("(absent)"), "{text}");
        assert_eq!(
            rules_text(&[], true),
            "  (none: a route without allow rules admits nobody)\n"
        );
    }

    #[test]
    fn hostile_claims_cannot_reach_the_terminal_raw() {
        let text = render_text(&deploy(
            json!({"ref": "\u{1b}[2J\u{1b}[31mrefs/heads/main", "aud": "\u{1b}]0;x\u{7}"}),
        ));
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(!text.contains('\u{7}'), "{text}");
    }

    #[test]
    fn json_has_the_same_content() {
        let value = render_json(&deploy(json!({"ref": "refs/heads/feature"})));
        assert_eq!(value["signature_checked"], false);
        assert_eq!(value["route"]["name"], "deploy");
        assert_eq!(value["route"]["audience"], AUD);
        assert_eq!(value["decision"]["outcome"], "denied");
        assert_eq!(value["decision"]["status"], 403);
        assert_eq!(value["decision"]["reason"], "policy_denied");
        assert_eq!(value["decision"]["rule"], Value::Null);
        assert_eq!(value["rules"][1]["rule"], "deploy.allow[0]");
        assert_eq!(value["rules"][1]["conditions"][1]["claim"], "ref");
        assert_eq!(
            value["rules"][1]["conditions"][1]["actual"],
            "\"refs/heads/feature\""
        );
        assert_eq!(value["rules"][1]["conditions"][1]["matched"], false);
        assert_eq!(value["headers"], Value::Null);
        let checks = value["checks"].as_array().expect("checks");
        assert!(
            checks
                .iter()
                .any(|check| check["name"] == "signature" && check["result"] == "not_checked")
        );
        let allowed = render_json(&deploy(json!({})));
        assert_eq!(allowed["decision"]["outcome"], "allowed");
        assert_eq!(allowed["decision"]["proxied"], true);
        assert_eq!(allowed["headers"]["x-github-ref"], "refs/heads/main");
    }
}

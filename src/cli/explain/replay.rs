//! [`explain_request`]: the request replayed through the gateway's own code — path
//! normalisation and routing, the token checks that need no key, revocation, the route's
//! rules, identity headers — every step recorded instead of stopping at the first refusal.

use http::Method;
use serde_json::Value;

use super::input::{DecodedToken, RequestTarget, RevocationSource};
use super::report::{AuthSummary, Check, Decision, Explanation, RouteSummary, RuleLine, Verdict};
use crate::auth::claims::{ClaimValue, Claims};
use crate::auth::identity::identity_headers;
use crate::auth::verify::{TokenTimes, claim_times, parse_header};
use crate::config::rules::RuleKind;
use crate::config::{Config, IssuerConfig, Mode, RouteAuth, RouteConfig};
use crate::policy::{self, PolicyDecision};
use crate::proxy::routing::{RouteTable, normalise_path};
use crate::refusal::Reason;

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
            limits: RouteSummary::limits_of(route),
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
        limits: RouteSummary::limits_of(route),
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
        Some(ClaimValue::Text(aud)) => aud == auth.audience,
        Some(ClaimValue::List(auds)) => auds.iter().any(|aud| aud == auth.audience),
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
fn shown(value: Option<ClaimValue<'_>>) -> String {
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
pub(super) fn time_checks(times: &TokenTimes, issuer: &IssuerConfig, now: u64) -> Vec<Check> {
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
pub(super) fn timestamp(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.min(253_402_300_799));
    crate::clock::format_rfc3339_millis(time).replace(".000Z", "Z")
}

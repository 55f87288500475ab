//! The explanation as text for a terminal ([`render_text`]) or as JSON for a script
//! ([`render_json`]), with the warning that the signature was not checked always first.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::replay::timestamp;
use super::report::{Check, RouteSummary, RuleLine};
use super::report::{Decision, Explanation};
use crate::config::Mode;
use crate::config::rules::RuleKind;
use crate::refusal::Reason;

/// Printed first, in both formats: a reader must never take explain's "ALLOWED" for a
/// verified token.
pub const SIGNATURE_WARNING: &str = concat!(
    "SIGNATURE NOT CHECKED: explain decodes the token without verifying it ",
    "and does not contact the issuer."
);

/// The consequence of [`SIGNATURE_WARNING`], spelt out.
const FORGERY_NOTE: &str =
    "A forged token with the same claims reads the same; only `jobgate serve` verifies.";

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
        Some(RouteSummary {
            name, auth: None, ..
        }) => {
            let _ = writeln!(out, "route     {name} (public: auth = false)");
        }
        Some(RouteSummary {
            name,
            auth: Some(auth),
            ..
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
    if let Some(route) = explanation
        .route
        .as_ref()
        .filter(|route| !route.limits.is_empty())
    {
        let _ = writeln!(
            out,
            "limits    {} (buckets are not read or spent here)",
            route.limits.join("; ")
        );
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
        None => json!({"name": route.name, "public": true, "limits": route.limits}),
        Some(auth) => json!({
            "name": route.name,
            "public": false,
            "issuer": auth.issuer,
            "issuer_url": auth.issuer_url,
            "audience": auth.audience,
            "mode": match auth.mode { Mode::Enforce => "enforce", Mode::Shadow => "shadow" },
            "strip_authorization": auth.strip_authorization,
            "limits": route.limits,
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

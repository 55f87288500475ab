//! Route policy on the request path: a verified token's claims against the route's compiled
//! rules (SPEC §3 step 8). Deny rules first, then the first allow rule that matches; no match
//! denies. `explain` gives the same verdict rule by rule, condition by condition.
//!
//! The rule types are compiled by `config` (see [`crate::config::rules`]); what is added here
//! is how they meet a token's [`Claims`].

use crate::auth::claims::{ClaimValue, Claims};
use crate::config::RouteAuth;
use crate::config::rules::{CompiledRule, Condition, Matcher, RuleKind, RuleRef};

impl Matcher {
    /// An absent claim never matches; a list claim matches when any element does; a claim
    /// that is neither scalar nor list of scalars never matches.
    pub fn matches_value(&self, value: Option<ClaimValue<'_>>) -> bool {
        match value {
            Some(ClaimValue::Text(text)) => self.matches_text(text),
            Some(ClaimValue::List(items)) => items.iter().any(|item| self.matches_text(item)),
            Some(ClaimValue::Other) | None => false,
        }
    }
}

impl Condition {
    pub fn matches(&self, claims: &Claims) -> bool {
        self.matcher.matches_value(claims.get(&self.claim))
    }

    /// What `explain` prints for this condition against one token.
    pub fn explain(&self, claims: &Claims) -> ConditionReport {
        let value = claims.get(&self.claim);
        ConditionReport {
            claim: self.claim.clone(),
            expected: self.matcher.to_string(),
            actual: value.as_ref().map(display_claim),
            matched: self.matcher.matches_value(value),
        }
    }
}

fn display_claim(value: &ClaimValue<'_>) -> String {
    match value {
        ClaimValue::Text(text) => format!("{text:?}"),
        ClaimValue::List(items) => {
            let items: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
            format!("[{}]", items.join(", "))
        }
        ClaimValue::Other => "(null, an object or a nested list: never matches)".to_owned(),
    }
}

impl CompiledRule {
    pub fn matches(&self, claims: &Claims) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.matches(claims))
    }

    /// Condition by condition, in the order written: expected value, actual claim, verdict.
    pub fn explain(&self, claims: &Claims) -> Vec<ConditionReport> {
        self.conditions
            .iter()
            .map(|condition| condition.explain(claims))
            .collect()
    }
}

/// Why one condition did or did not match, for `jobgate explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionReport {
    pub claim: String,
    /// The condition value as written in the config, e.g. `"refs/tags/v*"` or `["a", "b"]`.
    pub expected: String,
    /// The token's value, displayed; `None` when the claim is absent.
    pub actual: Option<String>,
    pub matched: bool,
}

/// The outcome of a route's rules for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyDecision {
    /// `allow[rule]` was the first allow rule to match, and no deny rule matched.
    Allowed { rule: usize },
    /// `deny[rule]` matched (deny rules are checked first).
    DeniedByRule { rule: usize },
    /// No deny rule matched, and no allow rule either (also: a route with no allow rule).
    NoAllowMatched,
}

impl PolicyDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, PolicyDecision::Allowed { .. })
    }

    /// The rule that decided; `None` when no rule matched.
    pub fn rule(&self) -> Option<RuleRef> {
        match *self {
            PolicyDecision::Allowed { rule } => Some(RuleRef {
                kind: RuleKind::Allow,
                index: rule,
            }),
            PolicyDecision::DeniedByRule { rule } => Some(RuleRef {
                kind: RuleKind::Deny,
                index: rule,
            }),
            PolicyDecision::NoAllowMatched => None,
        }
    }
}

/// Deny rules first (any match denies), then allow rules (the first match allows); no match
/// denies.
pub fn evaluate(auth: &RouteAuth, claims: &Claims) -> PolicyDecision {
    if let Some(rule) = auth.deny.iter().position(|rule| rule.matches(claims)) {
        return PolicyDecision::DeniedByRule { rule };
    }
    match auth.allow.iter().position(|rule| rule.matches(claims)) {
        Some(rule) => PolicyDecision::Allowed { rule },
        None => PolicyDecision::NoAllowMatched,
    }
}

/// One rule's verdict with its conditions, for `jobgate explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleReport {
    pub rule: RuleRef,
    pub matched: bool,
    pub conditions: Vec<ConditionReport>,
}

/// Every rule of the route in evaluation order (deny rules, then allow rules), each with its
/// conditions. [`evaluate`] gives the decision these reports lead to.
pub fn explain(auth: &RouteAuth, claims: &Claims) -> Vec<RuleReport> {
    let report = |kind, (index, rule): (usize, &CompiledRule)| RuleReport {
        rule: RuleRef { kind, index },
        matched: rule.matches(claims),
        conditions: rule.explain(claims),
    };
    let deny = auth
        .deny
        .iter()
        .enumerate()
        .map(|entry| report(RuleKind::Deny, entry));
    let allow = auth
        .allow
        .iter()
        .enumerate()
        .map(|entry| report(RuleKind::Allow, entry));
    deny.chain(allow).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::Claims;
    use crate::config::Mode;
    use crate::config::rules::CompiledRule;
    use crate::config::rules::test_rules::{matcher, rule};

    fn claims(json: serde_json::Value) -> Claims {
        Claims::from_json_object(json.as_object().expect("test claims are an object"))
    }

    fn route(allow: Vec<CompiledRule>, deny: Vec<CompiledRule>) -> RouteAuth {
        RouteAuth {
            issuer: 0,
            audience: "aud".into(),
            strip_authorization: true,
            mode: Mode::Enforce,
            allow_any_repository: false,
            allow,
            deny,
        }
    }

    #[test]
    fn integers_and_booleans_compare_as_text() {
        let attempt =
            claims(serde_json::json!({"run_attempt": "1", "ref_protected": "true", "n": 7}));
        assert!(rule(&[("run_attempt", "1")]).matches(&attempt));
        assert!(!rule(&[("run_attempt", "2")]).matches(&attempt));
        assert!(rule(&[("ref_protected", "true")]).matches(&attempt));
        assert!(rule(&[("n", "7")]).matches(&attempt));
        assert!(rule(&[("n", "\"7\"")]).matches(&attempt));
    }

    #[test]
    fn arrays_are_any_of() {
        let token = claims(serde_json::json!({"ref": "refs/tags/v2", "run_attempt": "3"}));
        assert!(rule(&[("ref", r#"["refs/heads/main", "refs/tags/v*"]"#)]).matches(&token));
        assert!(!rule(&[("ref", r#"["refs/heads/main"]"#)]).matches(&token));
        assert!(rule(&[("run_attempt", r#"[1, 2, 3]"#)]).matches(&token));
        assert!(rule(&[("ref", r#"["x", { regex = "refs/tags/v[0-9]+" }]"#)]).matches(&token));
    }

    #[test]
    fn absent_other_and_list_claims() {
        let token = claims(serde_json::json!({"aud": ["a", "b"], "weird": {"x": 1}, "nul": null}));
        assert!(!rule(&[("missing", "\"*\"")]).matches(&token));
        assert!(!rule(&[("weird", "\"*\"")]).matches(&token));
        assert!(!rule(&[("nul", "\"*\"")]).matches(&token));
        assert!(rule(&[("aud", "\"b\"")]).matches(&token));
        assert!(!rule(&[("aud", "\"c\"")]).matches(&token));
    }

    #[test]
    fn a_rule_needs_every_condition_and_an_empty_rule_matches_all() {
        let token =
            claims(serde_json::json!({"repository_owner": "acme", "ref": "refs/heads/main"}));
        assert!(rule(&[]).matches(&token));
        assert!(
            rule(&[
                ("repository_owner", "\"acme\""),
                ("ref", "\"refs/heads/*\"")
            ])
            .matches(&token)
        );
        assert!(
            !rule(&[("repository_owner", "\"acme\""), ("ref", "\"refs/tags/*\"")]).matches(&token)
        );
    }

    #[test]
    fn evaluate_checks_deny_first_then_first_allow() {
        let token = claims(
            serde_json::json!({"repository_owner": "acme", "runner_environment": "self-hosted"}),
        );
        let auth = route(
            vec![
                rule(&[("repository_owner", "\"other\"")]),
                rule(&[]),
                rule(&[]),
            ],
            vec![rule(&[("runner_environment", "\"github-hosted\"")])],
        );
        assert_eq!(evaluate(&auth, &token), PolicyDecision::Allowed { rule: 1 });
        let denied = route(
            vec![rule(&[])],
            vec![
                rule(&[("x", "\"y\"")]),
                rule(&[("runner_environment", "\"self-hosted\"")]),
            ],
        );
        let decision = evaluate(&denied, &token);
        assert_eq!(decision, PolicyDecision::DeniedByRule { rule: 1 });
        assert_eq!(
            decision.rule().map(|r| r.label("deploy")),
            Some("deploy.deny[1]".to_owned())
        );
        assert_eq!(
            evaluate(&route(vec![], vec![]), &token),
            PolicyDecision::NoAllowMatched
        );
        assert_eq!(
            PolicyDecision::Allowed { rule: 0 }
                .rule()
                .map(|r| r.label("d")),
            Some("d.allow[0]".into())
        );
    }

    #[test]
    fn explain_reports_each_condition() {
        let token =
            claims(serde_json::json!({"repository_owner": "acme", "ref": "refs/heads/dev"}));
        let compiled = rule(&[
            ("repository_owner", "\"acme\""),
            ("ref", r#"["refs/heads/main", "refs/tags/v*"]"#),
            ("environment", "\"production\""),
        ]);
        let report = compiled.explain(&token);
        assert_eq!(
            report[0],
            ConditionReport {
                claim: "repository_owner".into(),
                expected: "\"acme\"".into(),
                actual: Some("\"acme\"".into()),
                matched: true,
            }
        );
        assert_eq!(report[1].expected, r#"["refs/heads/main", "refs/tags/v*"]"#);
        assert!(!report[1].matched);
        assert_eq!(report[2].actual, None);
        let auth = route(vec![compiled], vec![rule(&[("run_attempt", "1")])]);
        let rules = explain(&auth, &token);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].rule.to_string(), "deny[0]");
        assert_eq!(rules[1].rule.to_string(), "allow[0]");
        assert!(!rules[1].matched);
        assert_eq!(
            matcher(r#"{ regex = "a.*" }"#).to_string(),
            r#"{ regex = "a.*" }"#
        );
    }
}

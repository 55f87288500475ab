//! `[[route.allow]]` / `[[route.deny]]`: each table compiled into a rule, with the
//! warnings SPEC §2 asks for (owner not pinned, rules on `sub` or a workflow name alone,
//! unknown claim names with a suggestion).

use std::ops::Range;

use toml::Spanned;

use super::diagnostics::Diagnostics;
use crate::config::file::{RouteSection, RuleTable};
use crate::config::rules::{CompiledRule, Condition, GITHUB_CLAIMS, Matcher, RuleKind, RuleRef};
use crate::config::{IssuerConfig, IssuerKind, JOB_URL};

/// Claims that identify the repository or its owner; used to tell a rule that relies on
/// `sub` alone.
const IDENTIFYING_CLAIMS: &[&str] = &[
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "enterprise",
    "enterprise_id",
    "job_workflow_ref",
];

/// A compiled rule with the spans its warnings point at.
pub(super) struct SpannedRule {
    pub(super) span: Range<usize>,
    /// Span of each condition's key, parallel to `compiled.conditions`.
    pub(super) keys: Vec<Range<usize>>,
    pub(super) compiled: CompiledRule,
}

impl SpannedRule {
    pub(super) fn condition(&self, claim: &str) -> Option<(&Range<usize>, &Condition)> {
        self.keys
            .iter()
            .zip(&self.compiled.conditions)
            .find(|(_, condition)| condition.claim == claim)
    }

    fn has(&self, claim: &str) -> bool {
        self.condition(claim).is_some()
    }
}

pub(super) fn compile_rules(rules: &[Spanned<RuleTable>], d: &mut Diagnostics) -> Vec<SpannedRule> {
    rules.iter().map(|rule| compile_rule(rule, d)).collect()
}

/// Conditions are kept in file order so that `explain` reads like the config.
fn compile_rule(rule: &Spanned<RuleTable>, d: &mut Diagnostics) -> SpannedRule {
    let mut entries: Vec<_> = rule.get_ref().iter().collect();
    entries.sort_by_key(|(claim, _)| claim.span().start);
    let mut keys = Vec::new();
    let mut conditions = Vec::new();
    for (claim, value) in entries {
        if claim.get_ref().is_empty() {
            d.error(
                &claim.span(),
                "a condition names an empty claim; write claim = value, e.g. \
                repository_owner = \"acme\"",
            );
            continue;
        }
        match Matcher::from_toml(value.get_ref()) {
            Ok(matcher) => {
                keys.push(claim.span());
                conditions.push(Condition::new(claim.get_ref(), matcher));
            }
            Err(message) => d.error(
                &value.span(),
                format!("condition on `{}`: {message}", claim.get_ref()),
            ),
        }
    }
    SpannedRule {
        span: rule.span(),
        keys,
        compiled: CompiledRule::new(conditions),
    }
}

/// The safety rule (public GitHub issuer) and the GitHub warnings of SPEC §2. The name-only
/// and `sub`-only warnings concern allow rules, since they are about who gets in; unknown
/// claims are reported on deny rules too, where a typo silently disables the deny.
pub(super) fn check_route_rules(
    section: &RouteSection,
    issuer: &IssuerConfig,
    allow: &[SpannedRule],
    deny: &[SpannedRule],
    d: &mut Diagnostics,
) {
    let route = section.name.get_ref();
    if issuer.is_public_github() {
        check_owner_pinning(section, allow, d);
    } else if let Some(flag) = section
        .allow_any_repository
        .as_ref()
        .filter(|flag| *flag.get_ref())
    {
        d.warn(
            &flag.span(),
            format!(
                "`allow_any_repository` has no effect on issuer \"{}\": only the public \
                GitHub issuer needs it; remove it",
                issuer.name
            ),
        );
    }
    if issuer.kind != IssuerKind::Github {
        return;
    }
    for (index, rule) in allow.iter().enumerate() {
        let rule_ref = RuleRef {
            kind: RuleKind::Allow,
            index,
        };
        warn_name_only(route, rule_ref, rule, d);
        warn_sub_only(route, rule_ref, rule, d);
    }
    let all = allow
        .iter()
        .enumerate()
        .map(|(index, rule)| (RuleKind::Allow, index, rule));
    let all = all.chain(
        deny.iter()
            .enumerate()
            .map(|(index, rule)| (RuleKind::Deny, index, rule)),
    );
    for (kind, index, rule) in all {
        warn_unknown_claims(route, RuleRef { kind, index }, rule, d);
    }
}

/// SPEC §2 safety rule: on the public GitHub issuer every allow rule must pin the owner, or
/// the route must opt out with `allow_any_repository = true` (then each unpinned rule is a
/// warning instead of an error).
fn check_owner_pinning(section: &RouteSection, allow: &[SpannedRule], d: &mut Diagnostics) {
    let route = section.name.get_ref();
    let opted_out = section
        .allow_any_repository
        .as_ref()
        .filter(|flag| *flag.get_ref());
    let mut unpinned = 0;
    for (index, rule) in allow.iter().enumerate() {
        if rule.compiled.pins_owner() {
            continue;
        }
        unpinned += 1;
        let name = RuleRef {
            kind: RuleKind::Allow,
            index,
        }
        .label(route);
        if opted_out.is_some() {
            d.warn(
                &rule.span,
                format!(
                    "rule {name} does not pin the repository owner: any repository on \
                     github.com can get a token for this audience and match it; accepted \
                     because the route sets allow_any_repository = true"
                ),
            );
        } else {
            d.error(
                &rule.span,
                format!(
                    "rule {name} does not pin the repository owner, and the public GitHub \
                     issuer signs tokens for every repository on github.com; add e.g. \
                     repository_owner_id = \"123456\" with repository_owner = \"acme\", or \
                     repository = \"acme/*\" (or set allow_any_repository = true on the route \
                     if any repository may really be admitted)"
                ),
            );
        }
    }
    if let Some(flag) = opted_out.filter(|_| unpinned == 0 && !allow.is_empty()) {
        d.warn(
            &flag.span(),
            format!(
                "`allow_any_repository` is not needed: every allow rule of route \
                \"{route}\" pins the owner; remove it"
            ),
        );
    }
}

/// Warns when a rule identifies the owner or repository by name without the id that cannot
/// be renamed or re-registered:
/// - `repository_owner` with neither `repository_owner_id` nor `repository_id`;
/// - `repository` with exact names and no `repository_id`;
/// - `repository` with globs (`acme/*`, which no single id can replace) and neither
///   `repository_owner_id` nor `repository_id`.
fn warn_name_only(route: &str, rule_ref: RuleRef, rule: &SpannedRule, d: &mut Diagnostics) {
    let label = rule_ref.label(route);
    if let Some((span, _)) = rule.condition("repository_owner")
        && !rule.has("repository_owner_id")
        && !rule.has("repository_id")
    {
        d.warn(
            span,
            format!(
                "rule {label} pins the owner by name only: `repository_owner` without \
                     `repository_owner_id`; names can be renamed or re-registered, ids cannot: \
                     add repository_owner_id = \"…\""
            ),
        );
    }
    if let Some((span, condition)) = rule.condition("repository") {
        let missing = if condition.matcher.is_literal() {
            (!rule.has("repository_id")).then_some("repository_id")
        } else {
            (!rule.has("repository_id") && !rule.has("repository_owner_id"))
                .then_some("repository_owner_id")
        };
        if let Some(missing) = missing {
            d.warn(
                span,
                format!(
                    "rule {label} pins the repository by name only: `repository` without \
                     `{missing}`; \
                     names can be renamed or re-registered, ids cannot: add {missing} = \"…\""
                ),
            );
        }
    }
}

/// Warns when `sub` is the rule's only identifying condition: it has a `sub` condition and
/// none on the repository, its owner, the enterprise or `job_workflow_ref`. GitHub is moving
/// to a new immutable `sub` format and organisations can customise `sub`, so a rule written
/// against today's `sub` may stop matching, or match more, tomorrow.
fn warn_sub_only(route: &str, rule_ref: RuleRef, rule: &SpannedRule, d: &mut Diagnostics) {
    let Some((span, _)) = rule.condition("sub") else {
        return;
    };
    if IDENTIFYING_CLAIMS.iter().any(|claim| rule.has(claim)) {
        return;
    }
    d.warn(
        span,
        format!(
            "rule {} relies on `sub` alone; GitHub is moving to a new immutable `sub` format \
             and organisations \
             can customise it: also pin repository_owner_id / repository_id (or repository)",
            rule_ref.label(route)
        ),
    );
}

fn warn_unknown_claims(route: &str, rule_ref: RuleRef, rule: &SpannedRule, d: &mut Diagnostics) {
    let effect = match rule_ref.kind {
        RuleKind::Allow => "this allow rule never matches",
        RuleKind::Deny => "this deny rule never denies",
    };
    for (span, condition) in rule.keys.iter().zip(&rule.compiled.conditions) {
        let claim = condition.claim.as_str();
        if GITHUB_CLAIMS.contains(&claim) {
            continue;
        }
        let hint = if claim == JOB_URL {
            " (job_url is derived for headers and the audit log; match check_run_id or run_id \
             instead)"
                .to_owned()
        } else {
            did_you_mean(claim)
        };
        d.warn(
            span,
            format!(
                "rule {} names claim `{claim}`, which GitHub does not issue{hint}, so {effect}",
                rule_ref.label(route)
            ),
        );
    }
}

/// A " (did you mean `x`?)" hint when a GitHub claim is within two edits of `name`.
pub(super) fn did_you_mean(name: &str) -> String {
    GITHUB_CLAIMS
        .iter()
        .map(|claim| (edit_distance(name, claim), claim))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map_or_else(String::new, |(_, claim)| {
            format!(" (did you mean `{claim}`?)")
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

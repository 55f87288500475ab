//! What `explain` found, as data: each step's verdict ([`Check`]), the route and its
//! authentication, the rules line by line, and the final [`Decision`]. Rendering is
//! `render`'s; building it is `replay`'s.

use super::input::{DecodedToken, RequestTarget};
use crate::config::Mode;
use crate::policy::RuleReport;
use crate::refusal::Reason;

/// The result of one offline check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Explain cannot tell offline (the signature, an unreadable revocation file).
    NotChecked,
}

impl Verdict {
    pub(super) fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotChecked => "SKIP",
        }
    }

    pub(super) fn json_name(self) -> &'static str {
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
    pub(super) fn pass(name: &'static str, detail: String) -> Check {
        Check {
            name,
            verdict: Verdict::Pass,
            detail,
            reason: None,
        }
    }

    pub(super) fn fail(name: &'static str, reason: Reason, detail: String) -> Check {
        Check {
            name,
            verdict: Verdict::Fail,
            detail,
            reason: Some(reason),
        }
    }

    pub(super) fn not_checked(name: &'static str, detail: String) -> Check {
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
    /// `[[route.limit]]` as "key: N per D"; explain reads no bucket and spends none.
    pub limits: Vec<String>,
}

impl RouteSummary {
    pub fn limits_of(route: &crate::config::RouteConfig) -> Vec<String> {
        route
            .limits
            .iter()
            .map(|limit| format!("{}: {} per {:?}", limit.key, limit.requests, limit.per))
            .chain(
                route
                    .single_use
                    .then(|| "single_use: each token admitted once".to_owned()),
            )
            .collect()
    }
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
    pub(super) fn new(
        token: &DecodedToken,
        target: &RequestTarget,
        now: u64,
        decision: Decision,
    ) -> Self {
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

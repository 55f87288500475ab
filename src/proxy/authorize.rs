//! The decision for a request on an authenticated route (SPEC §3 steps 5–8, §4): token,
//! verification, revocation, rules, identity headers. A plain async function over the
//! state and the request's `Authorization` values, so it is tested and benchmarked without
//! a server; the proxy only does the IO.

use std::sync::Arc;

use crate::auth::verify::{AuthError, VerifiedToken, extract_bearer, unverified_claims};
use crate::config::rules::RuleRef;
use crate::config::{IssuerConfig, Mode, RouteAuth};
use crate::policy;
use crate::policy::limits::{LimitVerdict, monotonic_ns, take_claims};
use crate::policy::replay::{FirstUse, TokenId};
use crate::proxy::audit::AuditIdentity;
use crate::proxy::state::{GatewayState, RouteRuntime};
use crate::refusal::Reason;

/// Let the request through.
#[derive(Debug)]
pub struct Allowed {
    /// Its identity headers are already built and known to be forwardable
    /// ([`VerifiedToken::identity_headers`]).
    pub token: Arc<VerifiedToken>,
    pub issuer: Arc<IssuerConfig>,
    /// The allow rule that admitted it; `None` in shadow mode when no rule did.
    pub rule: Option<RuleRef>,
    /// Shadow mode only: the rules would have refused the request.
    pub would_deny: bool,
}

/// Refuse the request.
#[derive(Debug)]
pub struct Refused {
    pub reason: Reason,
    /// What the audit log may say about who asked.
    pub identity: AuditIdentity,
    /// The deny rule that matched, if one did.
    pub rule: Option<RuleRef>,
}

impl Refused {
    fn anonymous(reason: Reason) -> Refused {
        Refused {
            reason,
            identity: AuditIdentity::None,
            rule: None,
        }
    }
}

/// Decides one request. `authorization` holds every `Authorization` header value;
/// `now` is Unix seconds.
pub async fn authorize<'a>(
    state: &GatewayState,
    auth: &RouteAuth,
    authorization: impl IntoIterator<Item = &'a [u8]>,
    now: u64,
) -> Result<Allowed, Refused> {
    let token = extract_bearer(authorization, state.config.server.max_token_bytes)
        .map_err(Refused::anonymous)?;
    let authenticator = &state.authenticator;
    let verified = match authenticator.authenticate_sync(auth.issuer, &auth.audience, token, now) {
        Some(result) => result,
        None => {
            authenticator
                .authenticate(auth.issuer, &auth.audience, token, now)
                .await
        }
    };
    let issuer = state
        .config
        .issuers
        .get(auth.issuer)
        .ok_or(Refused::anonymous(Reason::KeysUnavailable))?;
    let token_id = |token: &Arc<VerifiedToken>| AuditIdentity::Verified {
        token: Arc::clone(token),
        issuer: Arc::clone(issuer),
    };
    let verified = match verified {
        Ok(authenticated) => authenticated.token,
        Err(AuthError {
            reason, verified, ..
        }) => {
            let identity = match verified {
                Some(token) => token_id(&token),
                None => AuditIdentity::Unverified(Box::new(unverified_claims(token))),
            };
            return Err(Refused {
                reason,
                identity,
                rule: None,
            });
        }
    };
    let claims = &verified.claims;
    let refused = |reason, rule| Refused {
        reason,
        identity: token_id(&verified),
        rule,
    };
    let now_signed = i64::try_from(now).unwrap_or(i64::MAX);
    if state
        .revocations
        .current()
        .find(claims, now_signed)
        .is_some()
    {
        return Err(refused(Reason::Revoked, None));
    }
    let decision = policy::evaluate(auth, claims);
    let would_deny = !decision.is_allowed();
    if would_deny && auth.mode == Mode::Enforce {
        return Err(refused(Reason::PolicyDenied, decision.rule()));
    }
    if let Err(reason) = verified.identity_headers() {
        return Err(refused(reason, decision.rule()));
    }
    Ok(Allowed {
        rule: decision.rule(),
        would_deny,
        issuer: Arc::clone(issuer),
        token: verified,
    })
}

/// Why a request the rules admitted is refused after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAdmitted {
    pub reason: Reason,
    /// `Retry-After` seconds, for `rate_limited`.
    pub retry_after: Option<u64>,
}

/// SPEC §3 step 9, after the rules admitted a request: the route's claim-keyed limits, then
/// `single_use`. In this order so that a request refused by a limit does not use its token
/// up (a replayed one has still spent its limits). `token` is the bearer token's bytes,
/// which name a single-use token without `jti`; `now` is Unix seconds.
pub async fn admit(
    state: &GatewayState,
    route: &RouteRuntime,
    allowed: &Allowed,
    token: &[u8],
    now: u64,
) -> Result<(), NotAdmitted> {
    let claims = &allowed.token.claims;
    let verdict = take_claims(
        state.buckets.as_ref(),
        &route.limits,
        claims,
        monotonic_ns(),
    )
    .await;
    if let LimitVerdict::Limited { retry_after } = verdict {
        return Err(NotAdmitted {
            reason: Reason::RateLimited,
            retry_after: Some(LimitVerdict::retry_after_seconds(retry_after)),
        });
    }
    let Some(used) = &route.used_tokens else {
        return Ok(());
    };
    let id = TokenId::of(claims.text("jti"), token);
    let forget_at = allowed
        .token
        .exp
        .saturating_add(allowed.issuer.leeway.as_secs());
    let first_use = match &state.used_store {
        Some(shared) => shared.first_use(&route.name, id, forget_at, now).await,
        None => used.first_use(id, forget_at, now),
    };
    let reason = match first_use {
        FirstUse::Yes => return Ok(()),
        FirstUse::Replayed => Reason::ReplayedToken,
        FirstUse::Unknown => Reason::StateUnavailable,
    };
    Err(NotAdmitted {
        reason,
        retry_after: None,
    })
}

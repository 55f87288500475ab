//! Every way jobgate refuses a request, and what each refusal looks like on the wire.
//!
//! One enum maps to status, `WWW-Authenticate`, metric outcome, JSON body and gRPC status in
//! one place, so the proxy, the audit log and the metrics can never disagree about a reason.
//! The assembly of a refusal into a response (JSON body or gRPC trailers) is
//! `proxy::refusal`'s.
//!
//! A shared leaf at the bottom of the module order: `auth` and `policy` refuse with these
//! reasons, `metrics` counts them and `proxy` sends them, so the vocabulary sits below all
//! of them and imports nothing of jobgate's.

use std::fmt;

/// The fixed list of refusal reasons of SPEC §3. The `as_str` names are part of the
/// contract (JSON bodies, audit lines, metric labels): never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MissingToken,
    InvalidRequest,
    MalformedToken,
    TokenTooLarge,
    AlgNotAllowed,
    UnknownKey,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    IssuedInFuture,
    Revoked,
    PolicyDenied,
    UnforwardableClaim,
    BadPath,
    NoRoute,
    KeysUnavailable,
    UpstreamUnreachable,
    RateLimited,
    ReplayedToken,
    StateUnavailable,
}

/// The `outcome` label of `jobgate_requests_total` and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allowed,
    Public,
    WouldDeny,
    Denied,
    Unauthenticated,
    BadRequest,
    Unavailable,
    NoRoute,
    UpstreamError,
    RateLimited,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Allowed,
        Outcome::Public,
        Outcome::WouldDeny,
        Outcome::Denied,
        Outcome::Unauthenticated,
        Outcome::BadRequest,
        Outcome::Unavailable,
        Outcome::NoRoute,
        Outcome::UpstreamError,
        Outcome::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Public => "public",
            Outcome::WouldDeny => "would_deny",
            Outcome::Denied => "denied",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::BadRequest => "bad_request",
            Outcome::Unavailable => "unavailable",
            Outcome::NoRoute => "no_route",
            Outcome::UpstreamError => "upstream_error",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

impl Reason {
    pub const ALL: [Reason; 22] = [
        Reason::MissingToken,
        Reason::InvalidRequest,
        Reason::MalformedToken,
        Reason::TokenTooLarge,
        Reason::AlgNotAllowed,
        Reason::UnknownKey,
        Reason::BadSignature,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::Revoked,
        Reason::PolicyDenied,
        Reason::UnforwardableClaim,
        Reason::BadPath,
        Reason::NoRoute,
        Reason::KeysUnavailable,
        Reason::UpstreamUnreachable,
        Reason::RateLimited,
        Reason::ReplayedToken,
        Reason::StateUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::InvalidRequest => "invalid_request",
            Reason::MalformedToken => "malformed_token",
            Reason::TokenTooLarge => "token_too_large",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::UnknownKey => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::Revoked => "revoked",
            Reason::PolicyDenied => "policy_denied",
            Reason::UnforwardableClaim => "unforwardable_claim",
            Reason::BadPath => "bad_path",
            Reason::NoRoute => "no_route",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::UpstreamUnreachable => "upstream_unreachable",
            Reason::RateLimited => "rate_limited",
            Reason::ReplayedToken => "replayed_token",
            Reason::StateUnavailable => "state_unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Reason::InvalidRequest | Reason::BadPath => 400,
            Reason::Revoked | Reason::PolicyDenied => 403,
            Reason::NoRoute => 404,
            Reason::RateLimited => 429,
            Reason::UpstreamUnreachable => 502,
            Reason::KeysUnavailable | Reason::StateUnavailable => 503,
            Reason::MissingToken
            | Reason::MalformedToken
            | Reason::TokenTooLarge
            | Reason::AlgNotAllowed
            | Reason::UnknownKey
            | Reason::BadSignature
            | Reason::WrongIssuer
            | Reason::WrongAudience
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::IssuedInFuture
            | Reason::UnforwardableClaim
            | Reason::ReplayedToken => 401,
        }
    }

    pub fn outcome(self) -> Outcome {
        match self.status() {
            400 => Outcome::BadRequest,
            401 => Outcome::Unauthenticated,
            403 => Outcome::Denied,
            404 => Outcome::NoRoute,
            429 => Outcome::RateLimited,
            502 => Outcome::UpstreamError,
            _ => Outcome::Unavailable,
        }
    }

    /// Whether the refusal counts in `jobgate_auth_failures_total` (on an authenticated
    /// route): every 400/401/403/429/503, never a 502 or 404, and never `bad_path`, which
    /// is decided before routing and so never happens on a route.
    pub fn is_auth_failure(self) -> bool {
        self != Reason::BadPath && matches!(self.status(), 400 | 401 | 403 | 429 | 503)
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), if the refusal carries one.
    pub fn www_authenticate(self) -> Option<&'static str> {
        Some(match self {
            Reason::MissingToken => r#"Bearer realm="jobgate""#,
            Reason::InvalidRequest => r#"Bearer error="invalid_request""#,
            Reason::Revoked | Reason::PolicyDenied => r#"Bearer error="insufficient_scope""#,
            Reason::MalformedToken => {
                r#"Bearer error="invalid_token", error_description="malformed_token""#
            }
            Reason::TokenTooLarge => {
                r#"Bearer error="invalid_token", error_description="token_too_large""#
            }
            Reason::AlgNotAllowed => {
                r#"Bearer error="invalid_token", error_description="alg_not_allowed""#
            }
            Reason::UnknownKey => {
                r#"Bearer error="invalid_token", error_description="unknown_key""#
            }
            Reason::BadSignature => {
                r#"Bearer error="invalid_token", error_description="bad_signature""#
            }
            Reason::WrongIssuer => {
                r#"Bearer error="invalid_token", error_description="wrong_issuer""#
            }
            Reason::WrongAudience => {
                r#"Bearer error="invalid_token", error_description="wrong_audience""#
            }
            Reason::Expired => r#"Bearer error="invalid_token", error_description="expired""#,
            Reason::NotYetValid => {
                r#"Bearer error="invalid_token", error_description="not_yet_valid""#
            }
            Reason::IssuedInFuture => {
                r#"Bearer error="invalid_token", error_description="issued_in_future""#
            }
            Reason::UnforwardableClaim => {
                r#"Bearer error="invalid_token", error_description="unforwardable_claim""#
            }
            Reason::ReplayedToken => {
                r#"Bearer error="invalid_token", error_description="replayed_token""#
            }
            Reason::BadPath
            | Reason::NoRoute
            | Reason::KeysUnavailable
            | Reason::UpstreamUnreachable
            | Reason::RateLimited
            | Reason::StateUnavailable => {
                return None;
            }
        })
    }

    /// gRPC status code for `application/grpc*` requests (SPEC §3, end).
    pub fn grpc_status(self) -> u8 {
        match self.status() {
            400 => 3,
            401 => 16,
            403 => 7,
            404 => 5,
            429 => 8,
            _ => 14,
        }
    }

    /// The `error` field of the JSON body: the status in words.
    pub fn error_word(self) -> &'static str {
        match self.status() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            429 => "too_many_requests",
            502 => "bad_gateway",
            _ => "service_unavailable",
        }
    }

    /// The refusal body: `{"error":…,"reason":…,"route":…}`. Never carries request data
    /// other than the route name, which comes from our own config.
    pub fn json_body(self, route: Option<&str>) -> String {
        let route = match route {
            Some(name) => serde_json::Value::String(name.to_owned()),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "error": self.error_word(),
            "reason": self.as_str(),
            "route": route,
        })
        .to_string()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_maps_to_a_consistent_outcome() {
        for reason in Reason::ALL {
            let outcome = reason.outcome();
            match reason.status() {
                401 => assert_eq!(outcome, Outcome::Unauthenticated),
                403 => assert_eq!(outcome, Outcome::Denied),
                _ => {}
            }
            if reason.status() == 401 {
                assert!(reason.www_authenticate().is_some(), "{reason}");
            }
        }
        assert!(!Reason::UpstreamUnreachable.is_auth_failure());
        assert!(!Reason::NoRoute.is_auth_failure());
        assert!(!Reason::BadPath.is_auth_failure());
        assert!(Reason::KeysUnavailable.is_auth_failure());
    }

    #[test]
    fn body_is_small_json_with_the_route() {
        let body: serde_json::Value =
            serde_json::from_str(&Reason::Expired.json_body(Some("deploy"))).expect("valid json");
        assert_eq!(body["reason"], "expired");
        assert_eq!(body["route"], "deploy");
        let body: serde_json::Value =
            serde_json::from_str(&Reason::NoRoute.json_body(None)).expect("valid json");
        assert!(body["route"].is_null());
    }
}

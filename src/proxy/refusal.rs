//! A refusal as it goes on the wire: the [`Reason`]'s status, headers and JSON body, or the
//! gRPC "Trailers-Only" shape for gRPC clients. The mapping itself (status, header, body
//! fields) is `Reason`'s, in `crate::refusal`; this is only its assembly into a response.

use crate::refusal::Reason;

/// A refusal as it goes on the wire: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Seconds a client should wait before retrying after `keys_unavailable` or
/// `state_unavailable`.
pub const RETRY_AFTER_SECONDS: u32 = 5;

impl RefusalResponse {
    /// Builds the response for `reason`. gRPC clients (`content-type: application/grpc*`)
    /// get HTTP 200 with `grpc-status`/`grpc-message` and no body, the gRPC
    /// "Trailers-Only" shape, because they read the status from there, not from HTTP.
    pub fn new(reason: Reason, route: Option<&str>, grpc: bool) -> RefusalResponse {
        let mut headers = Vec::with_capacity(4);
        if let Some(challenge) = reason.www_authenticate() {
            headers.push(("www-authenticate", challenge.to_owned()));
        }
        if matches!(reason, Reason::KeysUnavailable | Reason::StateUnavailable) {
            headers.push(("retry-after", RETRY_AFTER_SECONDS.to_string()));
        }
        if grpc {
            headers.push(("content-type", "application/grpc".to_owned()));
            headers.push(("grpc-status", reason.grpc_status().to_string()));
            headers.push(("grpc-message", reason.as_str().to_owned()));
            return RefusalResponse {
                status: 200,
                headers,
                body: String::new(),
            };
        }
        headers.push(("content-type", "application/json".to_owned()));
        headers.push(("cache-control", "no-store".to_owned()));
        RefusalResponse {
            status: reason.status(),
            headers,
            body: reason.json_body(route),
        }
    }
}

impl RefusalResponse {
    /// Sets `Retry-After` (whole seconds), replacing any default: a rate-limited request
    /// learns exactly when its bucket has a token again.
    pub fn with_retry_after(mut self, seconds: u64) -> RefusalResponse {
        self.headers.retain(|(name, _)| *name != "retry-after");
        self.headers.push(("retry-after", seconds.to_string()));
        self
    }
}

/// True for requests whose client speaks gRPC.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|value| {
        value.len() >= 16 && value[..16].eq_ignore_ascii_case(b"application/grpc")
    })
}

#[cfg(test)]
mod response_tests {
    use super::*;

    #[test]
    fn grpc_refusals_are_http_200_with_a_grpc_status() {
        let response = RefusalResponse::new(Reason::PolicyDenied, Some("r"), true);
        assert_eq!(response.status, 200);
        assert!(response.headers.contains(&("grpc-status", "7".to_owned())));
        assert!(
            response
                .headers
                .contains(&("grpc-message", "policy_denied".to_owned()))
        );
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(is_grpc(Some(b"Application/GRPC")));
        assert!(!is_grpc(Some(b"application/json")));
        assert!(!is_grpc(None));
    }

    #[test]
    fn outages_carry_retry_after_and_no_challenge() {
        let response = RefusalResponse::new(Reason::KeysUnavailable, None, false);
        assert_eq!(response.status, 503);
        assert!(
            response
                .headers
                .iter()
                .any(|(name, _)| *name == "retry-after")
        );
        assert!(
            !response
                .headers
                .iter()
                .any(|(name, _)| *name == "www-authenticate")
        );
    }
}

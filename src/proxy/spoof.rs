//! SPEC §3 step 1: every client-sent header that could pose as an identity header is removed
//! before anything else reads the request — the names of every issuer's header table, and
//! everything under the prefixes only jobgate may set.

use std::collections::HashSet;

use pingora::http::RequestHeader;

use crate::config::IssuerConfig;

/// Header-name prefixes that only jobgate may set.
const RESERVED_PREFIXES: [&str; 2] = ["x-github-", "x-jobgate-"];

/// The client-sent headers that must never reach an upstream: every name any issuer's
/// header table uses, and everything under the reserved prefixes. Names compare
/// case-insensitively with `_` read as `-`, because some servers (and CGI-style
/// frameworks) treat `X_GitHub_Ref` and `X-GitHub-Ref` as the same header.
#[derive(Debug, Clone, Default)]
pub struct SpoofFilter {
    /// Lower-case, `-` form.
    names: HashSet<String>,
}

impl SpoofFilter {
    pub fn new<'a>(issuers: impl IntoIterator<Item = &'a IssuerConfig>) -> SpoofFilter {
        let names = issuers
            .into_iter()
            .flat_map(|issuer| issuer.headers.iter())
            .map(|(name, _)| canonical(name.as_str()))
            .collect();
        SpoofFilter { names }
    }

    /// True when a client must not send a header of this name.
    pub fn is_reserved(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        let reserved_prefix = RESERVED_PREFIXES.iter().any(|prefix| {
            bytes.len() >= prefix.len()
                && bytes
                    .iter()
                    .zip(prefix.as_bytes())
                    .all(|(a, b)| canonical_byte(*a) == *b)
        });
        if reserved_prefix {
            return true;
        }
        if self.names.is_empty() {
            return false;
        }
        // Header names from the `http` crate are already lower-case; only `_` needs care.
        if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
            self.names.contains(&canonical(name))
        } else {
            self.names.contains(name)
        }
    }

    /// Removes every reserved header from the request. Allocates only when it finds one.
    pub fn strip(&self, request: &mut RequestHeader) {
        let spoofed: Vec<http::HeaderName> = request
            .headers
            .keys()
            .filter(|name| self.is_reserved(name.as_str()))
            .cloned()
            .collect();
        for name in spoofed {
            request.remove_header(&name);
        }
    }
}

fn canonical_byte(byte: u8) -> u8 {
    if byte == b'_' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

fn canonical(name: &str) -> String {
    name.bytes().map(|b| canonical_byte(b) as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_with(names: &[&str]) -> SpoofFilter {
        SpoofFilter {
            names: names.iter().map(|n| canonical(n)).collect(),
        }
    }

    #[test]
    fn reserved_prefixes_and_table_names_are_caught_in_any_spelling() {
        let filter = filter_with(&["X-Repo"]);
        for name in [
            "x-github-repository",
            "x_github_ref",
            "X-GitHub-Anything",
            "x-jobgate-route",
            "x_jobgate_subject",
            "x-repo",
            "x_repo",
        ] {
            assert!(filter.is_reserved(name), "{name}");
        }
        for name in [
            "x-githubber",
            "authorization",
            "x-rep",
            "x-repo-2",
            "github",
        ] {
            assert!(!filter.is_reserved(name), "{name}");
        }
    }

    #[test]
    fn strip_removes_only_reserved_headers() {
        let filter = filter_with(&["x-repo"]);
        let mut request = RequestHeader::build("GET", b"/", None).expect("valid request");
        for name in ["x-github-ref", "x_jobgate_route", "x-repo", "x-keep"] {
            request.insert_header(name, "v").expect("valid header");
        }
        filter.strip(&mut request);
        let left: Vec<&str> = request.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-keep"]);
    }
}

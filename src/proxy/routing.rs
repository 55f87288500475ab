//! Which route a request belongs to (SPEC §3 steps 2–3): path normalisation, then host,
//! longest path prefix on a segment boundary, first declared, method filter.
//!
//! The table is built once per config load; a lookup allocates nothing unless the path
//! needs its dot-segments resolved.

use std::borrow::Cow;
use std::collections::HashMap;

use http::Method;

use crate::config::{HostMatch, RouteConfig};
use crate::refusal::Reason;

/// Resolves dot-segments (RFC 3986 §5.2.4) and refuses paths that could mean one thing to
/// jobgate and another to the upstream: encoded `/`, `\` or `.` (any case) and NUL.
pub fn normalise_path(path: &str) -> Result<Cow<'_, str>, Reason> {
    let bytes = path.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        match byte {
            0 => return Err(Reason::BadPath),
            b'%' => {
                let code = bytes.get(index + 1..index + 3).unwrap_or(b"");
                if code.eq_ignore_ascii_case(b"2f")
                    || code.eq_ignore_ascii_case(b"5c")
                    || code.eq_ignore_ascii_case(b"2e")
                    || code == b"00"
                {
                    return Err(Reason::BadPath);
                }
            }
            _ => {}
        }
    }
    if !path.starts_with('/') {
        // Origin-form requests always start with `/`; `*` (OPTIONS) and anything else
        // routes nowhere.
        return Err(Reason::BadPath);
    }
    if !has_dot_segment(path) {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(remove_dot_segments(path)))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments vanish, `..` removes the segment
/// before it and never climbs above the root. A trailing `.`/`..` leaves a trailing `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = index == last,
            ".." => {
                output.pop();
                trailing_slash = index == last;
            }
            other => {
                output.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut resolved = String::with_capacity(path.len());
    for segment in &output {
        resolved.push('/');
        resolved.push_str(segment);
    }
    if trailing_slash || resolved.is_empty() {
        resolved.push('/');
    }
    resolved
}

/// The host a request names, without port. `None` when it names none.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080`.
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Does `prefix` match `path` on a segment boundary?
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}

/// One candidate route in a bucket, sorted so that the first hit is the answer.
#[derive(Debug)]
struct Entry {
    prefix: String,
    methods: Option<Vec<Method>>,
    route: usize,
}

impl Entry {
    fn accepts(&self, path: &str, method: &Method) -> bool {
        prefix_matches(&self.prefix, path)
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.contains(method))
    }
}

/// Routes grouped by host pattern. Exact hosts win over wildcards, wildcards (longest
/// suffix first) over routes without a host; within a group, the longest prefix wins and
/// then the first declared.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<Entry>>,
    /// (suffix with its leading dot, entries), longest suffix first.
    wildcard: Vec<(String, Vec<Entry>)>,
    any: Vec<Entry>,
}

fn sort_bucket(entries: &mut [Entry]) {
    // Stable sort keeps declaration order among equal prefixes.
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.prefix.len()));
}

impl RouteTable {
    pub fn new(routes: &[RouteConfig]) -> RouteTable {
        let mut table = RouteTable::default();
        for (index, route) in routes.iter().enumerate() {
            let entry = Entry {
                prefix: route.path_prefix.clone(),
                methods: route.methods.clone(),
                route: index,
            };
            match &route.host {
                HostMatch::Any => table.any.push(entry),
                HostMatch::Exact(host) => table.exact.entry(host.clone()).or_default().push(entry),
                HostMatch::Suffix(suffix) => {
                    match table.wildcard.iter_mut().find(|(s, _)| s == suffix) {
                        Some((_, entries)) => entries.push(entry),
                        None => table.wildcard.push((suffix.clone(), vec![entry])),
                    }
                }
            }
        }
        table
            .exact
            .values_mut()
            .for_each(|bucket| sort_bucket(bucket));
        table
            .wildcard
            .iter_mut()
            .for_each(|(_, bucket)| sort_bucket(bucket));
        table
            .wildcard
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        sort_bucket(&mut table.any);
        table
    }

    /// The index of the route for this request, if any. `host` may carry a port and any
    /// case; `path` must already be normalised.
    pub fn lookup(&self, host: Option<&str>, path: &str, method: &Method) -> Option<usize> {
        let pick = |entries: &[Entry]| {
            entries
                .iter()
                .find(|entry| entry.accepts(path, method))
                .map(|entry| entry.route)
        };
        if let Some(host) = host.map(host_without_port).filter(|h| !h.is_empty()) {
            let found = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                self.exact.get(&host.to_ascii_lowercase())
            } else {
                self.exact.get(host)
            };
            if let Some(route) = found.and_then(|entries| pick(entries)) {
                return Some(route);
            }
            for (suffix, entries) in &self.wildcard {
                if host.len() > suffix.len()
                    && ends_with_ignore_case(host, suffix)
                    && let Some(route) = pick(entries)
                {
                    return Some(route);
                }
            }
        }
        pick(&self.any)
    }
}

fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn route(host: HostMatch, prefix: &str, methods: Option<&[&str]>) -> RouteConfig {
        RouteConfig {
            name: format!("{host:?}{prefix}"),
            host,
            path_prefix: prefix.to_string(),
            methods: methods.map(|m| {
                m.iter()
                    .map(|m| Method::from_bytes(m.as_bytes()).expect("test method"))
                    .collect()
            }),
            upstreams: Vec::new(),
            upstream_ca: None,
            timeout: Duration::from_secs(30),
            auth: None,
            limits: Vec::new(),
            single_use: false,
        }
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(normalise_path("/a/b/../c").as_deref(), Ok("/a/c"));
        assert_eq!(normalise_path("/a/./b").as_deref(), Ok("/a/b"));
        assert_eq!(normalise_path("/../../etc").as_deref(), Ok("/etc"));
        assert_eq!(normalise_path("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(normalise_path("/a/.").as_deref(), Ok("/a/"));
        assert_eq!(normalise_path("/..").as_deref(), Ok("/"));
        assert_eq!(normalise_path("/a/..b/c").as_deref(), Ok("/a/..b/c"));
        assert!(matches!(normalise_path("/plain"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn encoded_separators_and_nul_are_refused() {
        for path in [
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a%5cb",
            "/%2E%2E/x",
            "/%2e",
            "/a%00",
            "x",
        ] {
            assert_eq!(normalise_path(path), Err(Reason::BadPath), "{path}");
        }
        assert!(normalise_path("/a%20b").is_ok());
    }

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        assert!(prefix_matches("/v1/deploy", "/v1/deploy"));
        assert!(prefix_matches("/v1/deploy", "/v1/deploy/x"));
        assert!(!prefix_matches("/v1/deploy", "/v1/deployer"));
        assert!(prefix_matches("/v1/", "/v1/anything"));
        assert!(prefix_matches("/", "/x"));
    }

    #[test]
    fn longest_prefix_then_first_declared() {
        let routes = vec![
            route(HostMatch::Any, "/", None),
            route(HostMatch::Any, "/v1", None),
            route(HostMatch::Any, "/v1/deploy", None),
            route(HostMatch::Any, "/v1/deploy", None),
        ];
        let table = RouteTable::new(&routes);
        assert_eq!(table.lookup(None, "/v1/deploy/x", &Method::GET), Some(2));
        assert_eq!(table.lookup(None, "/v1/deployer", &Method::GET), Some(1));
        assert_eq!(table.lookup(None, "/other", &Method::GET), Some(0));
    }

    #[test]
    fn hosts_and_wildcards() {
        let routes = vec![
            route(HostMatch::Exact("api.example".into()), "/", None),
            route(HostMatch::Suffix(".example".into()), "/", None),
            route(HostMatch::Suffix(".b.example".into()), "/", None),
        ];
        let table = RouteTable::new(&routes);
        assert_eq!(
            table.lookup(Some("API.Example:8080"), "/", &Method::GET),
            Some(0)
        );
        assert_eq!(table.lookup(Some("x.example"), "/", &Method::GET), Some(1));
        assert_eq!(
            table.lookup(Some("a.b.example"), "/", &Method::GET),
            Some(2)
        );
        assert_eq!(table.lookup(Some("example"), "/", &Method::GET), None);
        assert_eq!(table.lookup(Some(".example"), "/", &Method::GET), None);
        assert_eq!(table.lookup(None, "/", &Method::GET), None);
        assert_eq!(table.lookup(Some("[::1]:80"), "/", &Method::GET), None);
    }

    #[test]
    fn method_filter_falls_through_to_the_next_candidate() {
        let routes = vec![
            route(HostMatch::Any, "/v1/deploy", Some(&["POST"])),
            route(HostMatch::Any, "/v1", Some(&["GET"])),
        ];
        let table = RouteTable::new(&routes);
        assert_eq!(table.lookup(None, "/v1/deploy", &Method::POST), Some(0));
        assert_eq!(table.lookup(None, "/v1/deploy", &Method::GET), Some(1));
        assert_eq!(table.lookup(None, "/v1/deploy", &Method::PUT), None);
    }
}

//! Path normalisation and route lookup on arbitrary request targets: `normalise_path`
//! never panics; what it returns starts with `/`, has no `.`/`..` segment and no encoded
//! `/`, `\`, `.` or NUL, and normalising it again changes nothing. `RouteTable::lookup`
//! only ever answers with a route whose host, path prefix (on a segment boundary) and
//! method fit the request.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use http::Method;
use jobgate::config::HostMatch;
use jobgate::proxy::routing::{RouteTable, host_without_port, normalise_path};
use jobgate_fuzz::config;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Case {
    path: String,
    host: Option<String>,
    method: u8,
}

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::HEAD,
    Method::DELETE,
    Method::OPTIONS,
];

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::new(&config().routes))
}

fn has_encoded_danger(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") || lower.contains("%00")
}

fuzz_target!(|case: Case| {
    let path = case.path.as_str();
    let Ok(normal) = normalise_path(path) else {
        return;
    };
    assert!(normal.starts_with('/'), "{normal:?} does not start with /");
    assert!(
        !normal
            .split('/')
            .any(|segment| segment == "." || segment == ".."),
        "{path:?} normalised to {normal:?}, which keeps a dot segment"
    );
    assert!(!normal.contains('\0'));
    assert!(
        !has_encoded_danger(&normal),
        "{normal:?} has an encoded separator"
    );
    match normalise_path(&normal) {
        Ok(again) => assert_eq!(again, normal, "normalising {path:?} twice changes it"),
        Err(reason) => panic!("{normal:?} (from {path:?}) refused on a second pass: {reason:?}"),
    }

    let host = case.host.as_deref();
    if let Some(host) = host {
        let bare = host_without_port(host);
        assert!(host.contains(bare), "host_without_port invented text");
    }
    let method = &METHODS[usize::from(case.method) % METHODS.len()];
    if let Some(index) = table().lookup(host, &normal, method) {
        let route = &config().routes[index];
        let prefix = route.path_prefix.as_str();
        assert!(
            normal.starts_with(prefix),
            "route {:?} for {normal:?}",
            route.name
        );
        assert!(
            prefix.ends_with('/')
                || normal.len() == prefix.len()
                || normal.as_bytes()[prefix.len()] == b'/',
            "route {:?} for {normal:?} is not on a segment boundary",
            route.name
        );
        if let Some(methods) = &route.methods {
            assert!(
                methods.contains(method),
                "route {:?} for {method}",
                route.name
            );
        }
        let bare = host
            .map(host_without_port)
            .unwrap_or("")
            .to_ascii_lowercase();
        match &route.host {
            HostMatch::Any => {}
            HostMatch::Exact(name) => assert_eq!(&bare, name, "host of route {:?}", route.name),
            HostMatch::Suffix(suffix) => assert!(
                bare.len() > suffix.len() && bare.ends_with(suffix.as_str()),
                "host {bare:?} for route {:?}",
                route.name
            ),
        }
    }
});

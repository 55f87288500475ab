//! `config::parse` (TOML, validation, compilation) on arbitrary UTF-8 text. Never panics;
//! a refusal always names at least one problem; an accepted config is internally
//! consistent and its route table, spoof filter and rules can be used.
#![no_main]

use std::path::Path;

use http::Method;
use jobgate::auth::claims::Claims;
use jobgate::proxy::spoof::SpoofFilter;
use jobgate::policy;
use jobgate::proxy::routing::RouteTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match jobgate::config::parse(text, Path::new("/nonexistent/fuzz/jobgate.toml")) {
        Ok(config) => config,
        Err(error) => {
            assert!(!error.errors.is_empty(), "a refusal with no error");
            let _ = error.to_string();
            return;
        }
    };
    assert!(config.server.max_token_bytes > 0);
    for route in &config.routes {
        assert!(
            route.path_prefix.starts_with('/'),
            "path_prefix {:?}",
            route.path_prefix
        );
        assert!(
            !route.upstreams.is_empty(),
            "route {:?} without upstream",
            route.name
        );
        if let Some(auth) = &route.auth {
            assert!(
                auth.issuer < config.issuers.len(),
                "issuer index out of range"
            );
            // Rules can be evaluated on any claims.
            let claims = Claims::from_json_object(&serde_json::Map::new());
            let _ = policy::evaluate(auth, &claims);
            let _ = policy::explain(auth, &claims);
        }
    }
    for issuer in &config.issuers {
        assert!(
            !issuer.algorithms.is_empty(),
            "issuer {:?} without algorithms",
            issuer.name
        );
    }
    let filter = SpoofFilter::new(config.issuers.iter().map(|issuer| issuer.as_ref()));
    for issuer in &config.issuers {
        for (name, _) in &issuer.headers {
            assert!(
                filter.is_reserved(name.as_str()),
                "identity header {name} not reserved"
            );
        }
    }
    let table = RouteTable::new(&config.routes);
    for route in &config.routes {
        if let Some(index) = table.lookup(None, &route.path_prefix, &Method::GET) {
            assert!(index < config.routes.len());
        }
    }
});

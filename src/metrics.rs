//! Prometheus metrics of SPEC §5.
//!
//! The label children a request touches are resolved once per config load (`RouteMetrics`),
//! so the request path increments plain atomics and never takes the registry's locks.
//! No label ever takes a claim value: cardinality is bounded by the config.
//!
//! A shared leaf at the bottom of the module order, next to `refusal` (the only module it
//! imports): the key stores and the token cache in `auth` count into it as well as the
//! request path in `proxy` and the server in `ops`, so it cannot live in any one of them.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::refusal::{Outcome, Reason};

/// Every metric jobgate exports, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    pub requests_total: IntCounterVec,
    pub auth_failures_total: IntCounterVec,
    pub request_duration_seconds: HistogramVec,
    pub auth_duration_seconds: HistogramVec,
    pub upstream_responses_total: IntCounterVec,
    pub jwks_refresh_total: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub jwks_last_success_timestamp_seconds: IntGaugeVec,
    pub token_cache_entries: IntGauge,
    pub audit_dropped_total: IntCounter,
    pub config_reloads_total: IntCounterVec,
    pub config_info: IntGaugeVec,
    pub build_info: IntGaugeVec,
    pub connections: IntGauge,
    pub connections_refused_total: IntCounterVec,
    /// Revocation entries in force, by where they come from (`file`, `runtime`).
    pub revocations: IntGaugeVec,
    /// Registered only with `[cluster]`: `jobgate_cluster_up` is absent without one (SPEC §5).
    cluster: OnceLock<ClusterMetrics>,
}

/// `jobgate_cluster_up` and `jobgate_cluster_errors_total{op}`.
pub struct ClusterMetrics {
    pub up: IntGauge,
    pub errors_total: IntCounterVec,
}

/// Latency buckets from 50 µs to 10 s: a cached auth step lives in the first few.
const DURATION_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric definitions are static and valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)
        .expect("metric definitions are static and valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("metric definitions are static and valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let token_cache_entries = IntGauge::new(
            "jobgate_token_cache_entries",
            "Verified tokens held in the cache.",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(token_cache_entries.clone()))
            .expect("registered once");
        let audit_dropped_total = IntCounter::new(
            "jobgate_audit_dropped_total",
            "Audit lines dropped because the writer fell behind.",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(audit_dropped_total.clone()))
            .expect("registered once");
        let metrics = Metrics {
            requests_total: counter_vec(
                &registry,
                "jobgate_requests_total",
                "Requests by route and outcome.",
                &["route", "outcome"],
            ),
            auth_failures_total: counter_vec(
                &registry,
                "jobgate_auth_failures_total",
                "Refusals on authenticated routes by reason.",
                &["route", "reason"],
            ),
            request_duration_seconds: histogram_vec(
                &registry,
                "jobgate_request_duration_seconds",
                "Time from request headers to the end of the response.",
                &["route"],
            ),
            auth_duration_seconds: histogram_vec(
                &registry,
                "jobgate_auth_duration_seconds",
                "Time spent verifying a token, by verified-token cache result.",
                &["cache"],
            ),
            upstream_responses_total: counter_vec(
                &registry,
                "jobgate_upstream_responses_total",
                "Upstream responses by status class.",
                &["route", "class"],
            ),
            jwks_refresh_total: counter_vec(
                &registry,
                "jobgate_jwks_refresh_total",
                "JWKS fetches by result.",
                &["issuer", "result"],
            ),
            jwks_keys: gauge_vec(
                &registry,
                "jobgate_jwks_keys",
                "Usable keys in the issuer's current key set.",
                &["issuer"],
            ),
            jwks_last_success_timestamp_seconds: gauge_vec(
                &registry,
                "jobgate_jwks_last_success_timestamp_seconds",
                "Unix time of the issuer's last successful JWKS fetch.",
                &["issuer"],
            ),
            token_cache_entries,
            audit_dropped_total,
            config_reloads_total: counter_vec(
                &registry,
                "jobgate_config_reloads_total",
                "Config reloads by result.",
                &["result"],
            ),
            config_info: gauge_vec(
                &registry,
                "jobgate_config_info",
                "1 for the live config, labelled with its file's SHA-256.",
                &["sha256"],
            ),
            build_info: gauge_vec(
                &registry,
                "jobgate_build_info",
                "1, labelled with the jobgate version.",
                &["version"],
            ),
            connections: {
                let gauge = IntGauge::new(
                    "jobgate_connections",
                    "Client connections of the proxy listeners open now.",
                )
                .expect("static metric definition");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("registered once");
                gauge
            },
            connections_refused_total: counter_vec(
                &registry,
                "jobgate_connections_refused_total",
                "Client connections closed by a limit, by reason.",
                &["reason"],
            ),
            revocations: gauge_vec(
                &registry,
                "jobgate_revocations",
                "Revocation entries in force, by source (file, runtime).",
                &["source"],
            ),
            registry,
            cluster: OnceLock::new(),
        };
        metrics.set_revocations(0, 0);
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// Marks `sha256` as the live config, and only it.
    pub fn set_config_info(&self, sha256: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[sha256]).set(1);
    }

    /// `jobgate_revocations`: both series always exist, at zero without entries.
    pub fn set_revocations(&self, file: usize, runtime: usize) {
        let gauge = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
        self.revocations
            .with_label_values(&["file"])
            .set(gauge(file));
        self.revocations
            .with_label_values(&["runtime"])
            .set(gauge(runtime));
    }

    /// The cluster series, registered on first use (a gateway with `[cluster]`).
    pub fn cluster(&self) -> &ClusterMetrics {
        self.cluster.get_or_init(|| {
            let up = IntGauge::new(
                "jobgate_cluster_up",
                "1 when the last Redis call succeeded, else 0.",
            )
            .expect("static metric definition");
            self.registry
                .register(Box::new(up.clone()))
                .expect("registered once");
            let errors_total = counter_vec(
                &self.registry,
                "jobgate_cluster_errors_total",
                "Redis calls that failed or timed out (or were skipped while Redis was down), by op.",
                &["op"],
            );
            for op in ["limit", "single_use", "revocation"] {
                errors_total.with_label_values(&[op]);
            }
            ClusterMetrics { up, errors_total }
        })
    }

    /// The text exposition format for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for the text format; an error would be a bug in
        // the metric definitions, and an empty page is the honest answer then.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            buffer.clear();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Upstream status classes for `jobgate_upstream_responses_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamClass {
    S2xx,
    S3xx,
    S4xx,
    S5xx,
    Error,
}

impl UpstreamClass {
    const ALL: [UpstreamClass; 5] = [
        UpstreamClass::S2xx,
        UpstreamClass::S3xx,
        UpstreamClass::S4xx,
        UpstreamClass::S5xx,
        UpstreamClass::Error,
    ];

    pub fn of_status(status: u16) -> UpstreamClass {
        match status {
            200..=299 => UpstreamClass::S2xx,
            300..=399 => UpstreamClass::S3xx,
            400..=499 => UpstreamClass::S4xx,
            500..=599 => UpstreamClass::S5xx,
            // 1xx never ends a response; anything else is not HTTP.
            _ => UpstreamClass::Error,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            UpstreamClass::S2xx => "2xx",
            UpstreamClass::S3xx => "3xx",
            UpstreamClass::S4xx => "4xx",
            UpstreamClass::S5xx => "5xx",
            UpstreamClass::Error => "error",
        }
    }
}

/// The metric children of one route (or of `none`), resolved once per config load.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    requests: [IntCounter; Outcome::ALL.len()],
    /// `None` where the series could never count (SPEC §5): every reason on a public route
    /// or on `none`, and the reasons that are not auth failures. Such a series is never
    /// created, so `/metrics` does not list it at zero.
    auth_failures: [Option<IntCounter>; Reason::ALL.len()],
    upstream: [IntCounter; UpstreamClass::ALL.len()],
    pub duration: Histogram,
}

impl RouteMetrics {
    /// `authenticated`: whether the route has an `auth` section (false for `none`).
    pub fn new(route: &str, authenticated: bool) -> RouteMetrics {
        let m = metrics();
        RouteMetrics {
            requests: Outcome::ALL.map(|outcome| {
                m.requests_total
                    .with_label_values(&[route, outcome.as_str()])
            }),
            auth_failures: Reason::ALL.map(|reason| {
                (authenticated && reason.is_auth_failure()).then(|| {
                    m.auth_failures_total
                        .with_label_values(&[route, reason.as_str()])
                })
            }),
            upstream: UpstreamClass::ALL.map(|class| {
                m.upstream_responses_total
                    .with_label_values(&[route, class.as_str()])
            }),
            duration: m.request_duration_seconds.with_label_values(&[route]),
        }
    }

    pub fn request(&self, outcome: Outcome) {
        self.requests[outcome as usize].inc();
    }

    pub fn auth_failure(&self, reason: Reason) {
        if let Some(counter) = &self.auth_failures[reason as usize] {
            counter.inc();
        }
    }

    pub fn upstream_response(&self, class: UpstreamClass) {
        self.upstream[class as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_order_matches_label_arrays() {
        for (index, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, index);
        }
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
        }
        for (index, class) in UpstreamClass::ALL.iter().enumerate() {
            assert_eq!(*class as usize, index);
        }
    }

    #[test]
    fn route_children_show_in_the_exposition() {
        let route = RouteMetrics::new("metrics-test-route", true);
        route.request(Outcome::Public);
        route.auth_failure(Reason::Expired);
        let text = metrics().render();
        assert!(
            text.contains(
                r#"jobgate_requests_total{outcome="public",route="metrics-test-route"} 1"#
            )
        );
        assert!(text.contains("jobgate_build_info"));
    }

    /// SPEC §5: a series starts at zero only where it can ever count.
    #[test]
    fn auth_failure_series_exist_only_where_they_can_count() {
        let _authenticated = RouteMetrics::new("metrics-auth-route", true);
        let _public = RouteMetrics::new("metrics-public-route", false);
        let text = metrics().render();
        let series = |route: &str, reason: Reason| {
            format!(
                r#"jobgate_auth_failures_total{{reason="{}",route="{route}"}} 0"#,
                reason.as_str()
            )
        };
        for reason in Reason::ALL {
            assert_eq!(
                text.contains(&series("metrics-auth-route", reason)),
                reason.is_auth_failure(),
                "{reason}"
            );
            assert!(
                !text.contains(&series("metrics-public-route", reason)),
                "{reason}"
            );
        }
        for reason in [
            Reason::NoRoute,
            Reason::BadPath,
            Reason::UpstreamUnreachable,
        ] {
            assert!(!reason.is_auth_failure(), "{reason}");
        }
        // Counting a reason that has no series is a no-op, never a panic.
        RouteMetrics::new("metrics-public-route", false).auth_failure(Reason::Expired);
    }
}

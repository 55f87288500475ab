//! What adding identity headers to Pingora's upstream `RequestHeader` costs, per way of
//! adding them (issue #14). Pingora keeps two maps per request header (values, and the
//! names' original case), and re-parses the name on every insert, so the API used matters.
//!
//! Count instructions, which are stable on a shared machine, by running one variant under
//! callgrind and subtracting the `clone` variant (the per-request copy alone):
//!
//! ```sh
//! cargo bench --bench headers --no-run
//! for v in clone insert append insert-static; do
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/headers-* $v 20000 2>&1 \
//!         | grep -o 'refs: *[0-9,]*'
//! done
//! ```
//!
//! Without arguments (as `cargo bench` runs it) it times every variant and prints ns per request.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::RequestHeader;

/// jobgate's allocator: Pingora's header maps allocate on every insert.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jobgate's GitHub table (src/config/validate/issuer.rs) and its three own headers.
const NAMES: [&str; 17] = [
    "x-github-repository",
    "x-github-repository-id",
    "x-github-repository-owner",
    "x-github-ref",
    "x-github-sha",
    "x-github-actor",
    "x-github-event-name",
    "x-github-environment",
    "x-github-workflow-ref",
    "x-github-job-workflow-ref",
    "x-github-run-id",
    "x-github-run-attempt",
    "x-github-check-run-id",
    "x-github-job-url",
    "x-jobgate-issuer",
    "x-jobgate-subject",
    "x-jobgate-route",
];

/// A request as Pingora's HTTP/1 parser leaves it: case map on, sized for its headers.
fn downstream() -> RequestHeader {
    let mut request = RequestHeader::build("GET", b"/api/bench", Some(3)).expect("request");
    request
        .insert_header("Host", "127.0.0.1:18403")
        .expect("host");
    request
        .insert_header("Authorization", "Bearer eyJ.eyJ.sig")
        .expect("authorization");
    request.insert_header("User-Agent", "wrk").expect("ua");
    request
}

fn headers() -> Vec<(Bytes, HeaderValue)> {
    NAMES
        .iter()
        .map(|name| {
            (
                Bytes::from_static(name.as_bytes()),
                HeaderValue::from_static("acme/app-with-a-realistic-length-value"),
            )
        })
        .collect()
}

fn run(variant: &str, template: &RequestHeader, headers: &[(Bytes, HeaderValue)]) -> usize {
    let mut request = template.clone();
    match variant {
        "clone" => {}
        "insert" => {
            for (name, value) in headers {
                request
                    .insert_header(name.clone(), value.clone())
                    .expect("insert");
            }
        }
        "append" => {
            for (name, value) in headers {
                request
                    .append_header(name.clone(), value.clone())
                    .expect("append");
            }
        }
        "insert-static" => {
            for (name, value) in NAMES.iter().zip(headers) {
                request
                    .insert_header(*name, value.1.clone())
                    .expect("insert");
            }
        }
        other => panic!("unknown variant {other}"),
    }
    black_box(&request);
    request.headers.len()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let template = downstream();
    let headers = headers();
    if let [variant, count] = args.as_slice() {
        let count: usize = count.parse().expect("a count");
        let total: usize = (0..count).map(|_| run(variant, &template, &headers)).sum();
        println!("{variant}: {total} headers");
        return;
    }
    for variant in ["clone", "insert", "append", "insert-static"] {
        let rounds = 200_000;
        let started = Instant::now();
        for _ in 0..rounds {
            black_box(run(variant, &template, &headers));
        }
        let ns = started.elapsed().as_nanos() as f64 / rounds as f64;
        println!("{variant:16} {ns:8.0} ns per request");
    }
}

//! `[[route.limit]]` (SPEC §8): the key, the bucket size and its window, and where a limit
//! may stand.

use std::time::Duration;

use super::diagnostics::{Diagnostics, duration};
use crate::config::file::RouteSection;
use crate::config::{LimitKey, RouteLimit};

/// The shortest window a limit may have: shorter ones are a typo for a longer one, and
/// Retry-After counts whole seconds.
const MIN_PER: Duration = Duration::from_secs(1);

/// Every limit of a route; a bad one is reported at its key and left out.
pub(super) fn compile_limits(
    section: &RouteSection,
    authenticated: bool,
    d: &mut Diagnostics,
) -> Vec<RouteLimit> {
    let route = section.name.get_ref();
    let mut limits = Vec::new();
    for table in &section.limit {
        let table = table.get_ref();
        let key = match table.key.get_ref().trim() {
            "" => {
                d.error(
                    &table.key.span(),
                    "a limit's `key` is empty; name a claim (e.g. \"check_run_id\") or \"client_ip\"",
                );
                continue;
            }
            "client_ip" => LimitKey::ClientIp,
            claim if !authenticated => {
                d.error(
                    &table.key.span(),
                    format!(
                        "route \"{route}\" is public (auth = false), so it has no claims to \
                         count by: key = \"{claim}\" is not allowed here; use \"client_ip\" or \
                         set auth = true"
                    ),
                );
                continue;
            }
            claim => LimitKey::Claim(claim.to_owned()),
        };
        let requests = match u32::try_from(*table.requests.get_ref()) {
            Ok(requests) if requests >= 1 => requests,
            _ => {
                d.error(
                    &table.requests.span(),
                    format!(
                        "a limit's `requests` must be a whole number from 1 to {}, got {}",
                        u32::MAX,
                        table.requests.get_ref()
                    ),
                );
                continue;
            }
        };
        let per = duration(d, "per", Some(&table.per), MIN_PER);
        if per < MIN_PER {
            d.error(
                &table.per.span(),
                format!(
                    "a limit's `per` must be at least 1s, got {:?}; write e.g. \"1s\" or \"1m\"",
                    table.per.get_ref()
                ),
            );
            continue;
        }
        if u128::from(requests) > per.as_nanos() {
            d.error(
                &table.requests.span(),
                "more than one request per nanosecond cannot be counted; lower `requests` or \
                 lengthen `per`",
            );
            continue;
        }
        limits.push(RouteLimit { key, requests, per });
    }
    limits
}

//! The config file as the user writes it: serde structs that mirror SPEC §2 key for key.
//!
//! Nothing here is used on the request path. These types exist so that the file format
//! stays stable and every key keeps its span for error messages; `validate` turns them into
//! the compiled types of `config::compiled`, once per load.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub issuer: Vec<IssuerSection>,
    #[serde(default)]
    pub route: Vec<RouteSection>,
    pub revocation: Option<RevocationSection>,
    pub cluster: Option<ClusterSection>,
}

/// `listen` and `upstream` take one string or a list of them.
///
/// Deserialised by hand: serde's `untagged` buffers the value, which loses the spans that
/// `Spanned` needs, so a derived untagged enum refuses every input.
#[derive(Debug, Clone)]
pub enum OneOrMany {
    /// A single string; its span is the enclosing `Spanned<OneOrMany>`'s.
    One(String),
    Many(Vec<Spanned<String>>),
}

impl OneOrMany {
    /// Every entry with its span; `span` is the span of the whole value (used for `One`).
    pub fn to_vec(&self, span: Range<usize>) -> Vec<Spanned<String>> {
        match self {
            OneOrMany::One(one) => vec![Spanned::new(span, one.clone())],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;

        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(value.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<Spanned<OneOrMany>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub threads: Option<Spanned<i64>>,
    pub max_token_bytes: Option<Spanned<i64>>,
    pub grace_period: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub header_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    /// Bound of the verified-token cache; default 100 000.
    pub token_cache_entries: Option<Spanned<i64>>,
    /// CIDRs or addresses whose `X-Forwarded-For` is believed (SPEC §8).
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    /// Enables the `/revocations` admin API (SPEC §9): a file holding its bearer token.
    pub admin_token_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    pub output: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub jwks_url: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub server_url: Option<Spanned<String>>,
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub leeway: Option<Spanned<String>>,
    pub refresh: Option<Spanned<String>>,
    pub min_refetch_interval: Option<Spanned<String>>,
    pub max_stale: Option<Spanned<String>>,
    pub max_token_age: Option<Spanned<String>>,
    /// Header name → claim name. The map is sorted by name; sort by the keys' spans to get
    /// file order.
    pub headers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// Optional here so that a missing upstream is reported with the route's other errors.
    pub upstream: Option<Spanned<OneOrMany>>,
    pub upstream_ca: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
    pub audience: Option<Spanned<String>>,
    pub auth: Option<Spanned<bool>>,
    pub strip_authorization: Option<Spanned<bool>>,
    pub mode: Option<Spanned<String>>,
    pub allow_any_repository: Option<Spanned<bool>>,
    pub single_use: Option<Spanned<bool>>,
    #[serde(default)]
    pub allow: Vec<Spanned<RuleTable>>,
    #[serde(default)]
    pub deny: Vec<Spanned<RuleTable>>,
    #[serde(default)]
    pub limit: Vec<Spanned<LimitTable>>,
}

/// One `[[route.limit]]`: a token bucket per distinct value of `key` (SPEC §8).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitTable {
    pub key: Spanned<String>,
    pub requests: Spanned<i64>,
    pub per: Spanned<String>,
}

/// One `[[route.allow]]` / `[[route.deny]]` table: claim name → condition value.
/// Values stay raw TOML so that validation can explain exactly what is wrong with one.
/// Sorted by claim name; the keys' spans give file order.
pub type RuleTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub redis_url: Spanned<String>,
    pub key_prefix: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSection {
    pub file: Option<Spanned<String>>,
    /// Where runtime revocations live without `[cluster]` (SPEC §9).
    pub state_file: Option<Spanned<String>>,
}

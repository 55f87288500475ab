//! Policy: what a verified token may do on a route, after `auth` has said who it is.
//!
//! - `rules`: the route's allow/deny rules (compiled by `config::rules`) against the token's
//!   claims, and the same verdict explained rule by rule;
//! - `revocation`: the revocation list (SPEC §6), re-read when its file changes;
//! - `limits`: `[[route.limit]]` token buckets (SPEC §8), behind the `BucketStore` trait so
//!   that a store shared by many gateways can take the place of this process's buckets.
//! - `replay`: `single_use` routes (SPEC §8), the used tokens behind the `UsedTokenStore`
//!   trait for the same reason.
//!
//! May import: `config`, `auth` and the shared leaves (`clock`, `refusal`, `metrics`); never
//! `proxy`, `ops` or `cli`.

pub mod limits;
pub mod replay;
pub mod revocation;
pub mod rules;

pub use rules::{ConditionReport, PolicyDecision, RuleReport, evaluate, explain};

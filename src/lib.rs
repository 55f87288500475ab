//! jobgate: a reverse-proxy authentication gateway for GitHub Actions OIDC tokens.
//!
//! The modules follow a request's path: `config` → `jwks`/`keys` (issuers' key sets) →
//! `verify` (token checks, with `token_cache`) → `policy` (route rules) → `proxy` (the thin
//! Pingora glue, with `routing` and `upstream`) → `identity` (headers) → `metrics`/`audit`.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod refusal;

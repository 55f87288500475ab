//! jobgate: a reverse-proxy authentication gateway for GitHub Actions OIDC tokens.
//!
//! The modules follow a request's path: `config` → `jwks`/`keys` (issuers' key sets) →
//! `verify` (token checks, with `token_cache`) → `policy` (route rules) → `proxy` (the thin
//! Pingora glue, with `routing` and `upstream`) → `identity` (headers) → `metrics`/`audit`.

pub mod claims;
pub mod config;
pub mod metrics;
pub mod policy;
pub mod refusal;
pub mod jwks;
pub mod keys;
pub mod token_cache;
pub mod verify;
pub mod routing;
pub mod upstream;
pub mod identity;
pub mod state;
pub mod proxy;
pub mod admin;
pub mod server;

//! jobgate: a reverse-proxy authentication gateway for GitHub Actions OIDC tokens.
//!
//! The folders follow a request's path, and each imports only from the ones before it:
//!
//! 1. `config`: the file, validated and compiled once per load;
//! 2. `auth`: issuers' keys and the token checks (who is calling);
//! 3. `policy`: route rules and revocation (what the caller may do);
//! 4. `proxy`: the Pingora glue — routing, the server-free `authorize` decision, upstreams,
//!    the per-load gateway state, the audit record;
//! 5. `ops`: running it — start-up, admin listener, reload;
//! 6. `cli`: `check`, `explain` and `demo`.
//!
//! Below them all sit three shared leaves that import nothing above them: `clock`,
//! `refusal` (the vocabulary of refusal reasons) and `metrics`. `scripts/module_deps.py`
//! checks in CI that no import points the other way.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod refusal;

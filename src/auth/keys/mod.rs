//! Verifying keys, per issuer: the JWKS format (`jwks`), fetching it (`fetch`), when to
//! fetch again (`refresh`), and the [`KeyStore`] that publishes the current set to every
//! worker thread without a lock (`store`).
//!
//! May import: `config` and the shared leaves. `store` uses the other three; `jwks`,
//! `fetch` and `refresh` do not use each other's types except `fetch` reading `jwks`' limits.

pub mod fetch;
pub mod jwks;
pub mod refresh;
pub mod store;
#[cfg(test)]
mod tests;

pub use store::{KeySnapshot, KeyStore, REFETCH_WAIT};

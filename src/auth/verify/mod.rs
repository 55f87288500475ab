//! Token verification, SPEC §3 steps 5–7, one step per file in the order a token meets them:
//!
//! 1. `bearer`: the token from the `Authorization` header values;
//! 2. `jose`: its three parts and JOSE header (`alg` allowed, no `crit`) before any key;
//! 3. `signature`: the signature, with a key of the issuer's JWKS only;
//! 4. `payload`: claim types and times, `iss`;
//! 5. `verified`: the [`VerifiedToken`] the cache keeps, and the per-request checks (`aud`,
//!    `exp`, `nbf`, `iat`);
//! 6. `token_cache`: verified tokens by a keyed hash and the whole token, so a job that
//!    calls often pays for one signature check;
//! 7. `authenticator`: the [`Authenticator`] that runs the above for a route's issuer.
//!
//! `unverified` reads the few claims the audit log may show for a refused token.
//!
//! May import: `auth::keys`, `auth::claims`, `auth::identity`, `config` and the shared
//! leaves. Within the folder the order above is the import order: a file uses only files
//! listed before it.

pub mod authenticator;
pub mod bearer;
pub mod jose;
pub mod payload;
pub mod signature;
#[cfg(test)]
mod tests;
pub mod token_cache;
pub mod unverified;
pub mod verified;

pub use authenticator::{AuthError, Authenticated, Authenticator};
pub use bearer::extract_bearer;
pub use jose::{JoseHeader, TokenParts, parse_header, split_token};
pub use payload::{TokenTimes, claim_times, numeric_date, parse_claims};
pub use signature::check_signature;
pub use unverified::{UnverifiedClaims, unverified_claims};
pub use verified::{VerifiedToken, check_request, verify_with_key};

//! Authentication: who is calling (SPEC §3 steps 5–7). A request's bearer token becomes a
//! verified token with its claims, or a refusal [`Reason`](crate::refusal::Reason).
//!
//! - `keys/`: where the verifying keys come from — an issuer's JWKS parsed (`jwks`),
//!   fetched (`fetch`) on a schedule (`refresh`) into a per-issuer [`KeyStore`](keys::KeyStore);
//! - `verify/`: the token checks in SPEC order — bearer extraction, JOSE header, signature,
//!   payload, per-request checks — the verified-token cache, and the
//!   [`Authenticator`](verify::Authenticator) that runs them;
//! - `claims`: a token's claims, parsed once into the form rules, headers and the audit log
//!   read;
//! - `identity`: the identity headers a verified token gives the upstream (SPEC §4). They
//!   live here, not in `policy`, because they are derived once per verified token and cached
//!   with it (`VerifiedToken::identity_headers`).
//!
//! May import: `config` and the shared leaves (`clock`, `refusal`, `metrics`); never
//! `policy`, `proxy`, `ops` or `cli`.

pub mod claims;
pub mod identity;
pub mod keys;
pub mod verify;

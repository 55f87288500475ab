//! Operations: running the proxy as a service.
//!
//! - `server`: start-up (listeners, TLS, worker threads), signals and graceful shutdown;
//! - `admin`: the admin listener (`/healthz`, `/readyz`, `/metrics`);
//! - `revocations`: its `/revocations` API (SPEC §9) and where runtime entries are kept;
//! - `reload`: a new config on SIGHUP or when the file changes, swapped in whole, with
//!   unchanged issuers keeping their keys.
//!
//! Metrics are a shared leaf (`crate::metrics`), not here: the request path and the key
//! stores count into them too. The gateway state, the audit log and TLS file handling are in
//! `proxy`, which reads them per request.
//!
//! May import: `proxy` and everything below it; never `cli`.

pub mod admin;
pub mod reload;
pub mod revocations;
pub mod server;

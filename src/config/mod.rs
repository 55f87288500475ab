//! Configuration, the bottom of the request's path: everything else reads a [`Config`], and
//! nothing here reads anything else of jobgate's.
//!
//! - `file`: the TOML file as the user writes it (serde structs, spans kept);
//! - `validate/`: file → checked → compiled, one file per section, every problem reported at
//!   its line (`diagnostic`);
//! - `compiled` and `rules`: the validated types the gateway runs on, route rules included
//!   (they are data here; `policy` evaluates them against a token's claims);
//! - `duration`: the one duration syntax of SPEC §2;
//! - `trusted_proxies`: the proxies whose `X-Forwarded-For` names the client;
//! - `load`: read a file and run the above, once per load.
//!
//! May import: nothing else in the crate. Every other module may import from here.

pub mod compiled;
pub mod diagnostic;
pub mod duration;
pub mod file;
pub mod load;
pub mod rules;
pub mod trusted_proxies;
pub mod validate;

pub use compiled::*;
pub use diagnostic::{ConfigError, Diagnostic};
pub use load::{load, parse};
pub use trusted_proxies::TrustedProxies;

//! The command line's own work, above everything the gateway runs: `check` (validate a
//! config offline), `explain` (replay a request through the gateway's code, offline),
//! `demo` (the whole gateway with an embedded issuer and an echo upstream) and `revoke` (a
//! client of a running gateway's revocation API). `serve` itself is `ops::server`; `main.rs` only parses
//! arguments and picks one of these.
//!
//! May import: everything; nothing imports from here.

pub mod check;
pub mod demo;
pub mod explain;
pub mod revoke;

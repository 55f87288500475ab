//! The revocation lists (SPEC §6, §9): tokens of named jobs refused with 403 `revoked` even
//! though they verify, e.g. every token of a job that ran on a leaked runner.
//!
//! Two lists are in force, each behind its own `ArcSwap` so the request path reads both
//! without a lock: the revocation file's, and the runtime entries added through the admin
//! API (`runtime`, kept by a `state_file` store or a shared one).
//!
//! The file is re-read when it changes (polled every second, by modification time, size and
//! inode, so editors that save by rename are seen) and on SIGHUP. A file that cannot be read
//! or parsed leaves the previous list in force.
//! - `list`: the file's entries, parsed and compiled;
//! - `conditions`: JSON ⇄ TOML conditions, so both kinds of entry compile the same way;
//! - `runtime`: the runtime entry type and the `RuntimeRevocations` trait of its stores;
//! - `state_file`: the store of one gateway without `[cluster]`;
//! - `store`: both lists in force, read by the request path.

pub mod conditions;
pub mod list;
pub mod runtime;
pub mod state_file;
pub mod store;

pub use list::{Revocation, RevocationList};
pub use store::{
    FileStamp, POLL_INTERVAL, RevocationStore, RuntimeList, RuntimeRevocation, Snapshot,
    file_entry_id, file_stamp,
};

//! Route rules: conditions on claims, compiled once per config.

/// One `[[route.allow]]` or `[[route.deny]]` table, compiled.
#[derive(Debug)]
pub struct CompiledRule {}

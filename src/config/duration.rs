//! Durations as SPEC §2 writes them: one integer and one unit (`500ms`, `30s`, `10m`, `24h`, `7d`).

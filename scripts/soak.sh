#!/usr/bin/env bash
# Soak test: mixed valid/invalid/denied/public traffic against the real binary for
# SOAK_SECONDS (default 600) while keys rotate every minute and the config reloads every
# 45 s; prints requests and unexpected statuses by kind, and RSS at start, minute 2 and end.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${1:-${SOAK_SECONDS:-600}}"
timeout $((SOAK_SECONDS + 600)) cargo test --release --test soak -- --ignored --nocapture

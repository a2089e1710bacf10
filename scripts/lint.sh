#!/usr/bin/env bash
# The checks CI runs besides the tests: formatting, clippy on every target with warnings denied,
# rustdoc with warnings denied (broken links, missing docs), and a check with no default features
# (no backend), which a library user may pick.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
FEATURES=wgpu,flex,progress

cargo fmt --all --check
cargo clippy --workspace --all-targets --features "$FEATURES" -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --features "$FEATURES" --no-deps
cargo check --workspace --no-default-features

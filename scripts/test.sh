#!/usr/bin/env bash
# The project's tests on a fresh machine: installs what they need (Mesa's lavapipe Vulkan driver,
# so the wgpu backend runs on the CPU), runs every test on the ndarray, flex and wgpu backends
# (derive UI tests and the progress bar included; `cargo test --workspace --features
# wgpu,flex,progress`), then every doc test with the facade's model kit re-exported (`models`;
# the UI tests' expected errors are those without it), and checks that the `cuda` feature
# compiles (CUDA itself is loaded at run time, so no toolkit is needed to build).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s mesa-vulkan-drivers >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi

# A one-shot build: incremental caches would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Unit, integration and UI tests (examples are compiled by the lints' clippy, not rebuilt here).
cargo test --workspace --features wgpu,flex,progress --lib --bins --tests
# Doc tests, with the facade's model kit on. `--workspace` keeps the dependencies' features the
# same as above: `-p burn-patcher` alone would unify them differently and rebuild all of Burn,
# which doubles the disk a clean run needs.
cargo test --workspace --doc --features wgpu,flex,progress,models
cargo check --features cuda

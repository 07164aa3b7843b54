#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
# Installs whatever the tests need from the package registries, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Benchmarks compile and run once on a few trials (a smoke test; `cargo bench` runs them in full).
cargo test --locked --benches
# Unit and integration tests: real processes, real SQLite files.
cargo test --locked --lib --bins --tests

#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
# Installs whatever the tests need from the package registries, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Benchmarks compile and run once on a few trials (a smoke test; `cargo bench` runs them in full).
cargo test --locked --benches

# The web page in a real browser: Debian's chromium driven by playwright-core (pinned in
# tests/e2e/package-lock.json). A live sweep, checked headless; screenshots in target/e2e/.
cargo build --locked --bin sweep
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
timeout 210 node tests/e2e/e2e.mjs target/debug/sweep

# A real single-node Slurm for the cluster tests (installs slurm-wlm and munge if missing),
# stopped again when the tests end. The Slurm tests fail rather than skip without it.
trap tests/slurm/down.sh EXIT
slurm_env=$(tests/slurm/up.sh)
eval "$slurm_env"
export SWEEP_REQUIRE_SLURM=1

# Unit and integration tests: real processes, real SQLite files, a real Slurm.
cargo test --locked --lib --bins --tests

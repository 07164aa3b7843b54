#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
# Installs whatever the tests need from the package registries, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets

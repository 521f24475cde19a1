#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: prepares what it needs
# (scripts/setup.sh), then format, lints and every test of the workspace
# (unit, vectors, conformance suites on the real brokers, cross-language
# tests against the Python peers, the Python package's tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features
# The Python package: its wheel built into the project venv, then its tests
# (Django services of python/tests/testproject on the real brokers).
PY="$(scripts/python-package.sh)"
(cd python/tests && "$PY" -m pytest -q -p no:cacheprovider)
# A short deterministic pass of hostile inputs through every wire parser.
scripts/fuzz.sh 2000

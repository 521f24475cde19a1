#!/usr/bin/env bash
# Build the Python package (the wheel of python/, with the Rust core and
# every backend) and install it into the project venv, unless the venv has
# the wheel of these very sources already. Prints the venv's interpreter.
#
#   PY=$(scripts/python-package.sh)            # a dev build (what the tests use)
#   PROFILE=release scripts/python-package.sh  # an optimized build (benchmarks)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(scripts/python-env.sh)"
profile="${PROFILE:-dev}"
# What goes into the wheel (not python/tests: a test edit needs no rebuild).
sources=(crates python/openedx_event_bus python/pyproject.toml Cargo.toml Cargo.lock)
sources_hash="$( (git ls-files -s "${sources[@]}" 2>/dev/null; git diff HEAD -- "${sources[@]}" 2>/dev/null) | sha256sum | cut -c1-16)"
stamp="$(dirname "$(dirname "$PY")")/.openedx-event-bus-wheel"
if [[ "$(cat "$stamp" 2>/dev/null)" == "$profile-$sources_hash" ]] && "$PY" -c "import openedx_event_bus._core" 2>/dev/null; then
  echo "$PY"; exit 0
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
flags=(--strip --compatibility linux --out "$out" -i "$PY")
[[ "$profile" == release ]] && flags+=(--release)
echo "python-package: building the wheel ($profile)" >&2
(cd python && "$PY" -m maturin build "${flags[@]}" >&2)
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$out"/*.whl >&2
echo "$profile-$sources_hash" > "$stamp"
echo "$PY"

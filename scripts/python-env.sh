#!/usr/bin/env bash
# Create (once) the Python virtualenv with the pinned Python peers used by the
# cross-language tests and benchmarks, and print its interpreter path.
#
#   PY=$(scripts/python-env.sh)      # creates or reuses the venv
#
# The venv lives outside the checkout (~/.cache/openedx-event-bus/) and is
# rebuilt only when the pins below change. openedx-events 11.x needs Python
# 3.12; if no 3.12 exists, 3.11 works with --ignore-requires-python (the
# vectors were shown identical), and anything older fails loudly.
set -euo pipefail

PINS=(
  "openedx-events==11.2.0"
  "edx-event-bus-redis==1.1.2"
  "edx-event-bus-kafka==6.2.0"
  "confluent-kafka[avro,schemaregistry]==2.16.1"
  "pulsar-client==3.13.0"
  "fastavro"
  "Django>=4.2,<6.1"
  # The Python package of this workspace: its build tool and its tests.
  "maturin>=1.7,<2"
  "pytest>=8"
  "pytest-django>=4.9"
  "psycopg[binary]>=3.1"
)
EXTRA_NO_DEPS=("pulsar-lite==0.2.0")

cache="${OPENEDX_EVENT_BUS_CACHE:-$HOME/.cache/openedx-event-bus}"
stamp_text="$(printf '%s\n' "${PINS[@]}" "${EXTRA_NO_DEPS[@]}" v3)"
stamp_hash="$(printf '%s' "$stamp_text" | sha256sum | cut -c1-16)"
venv="$cache/venv-$stamp_hash"

if [[ -x "$venv/bin/python" && -f "$venv/.complete" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

find_python() {
  local c
  for c in python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3" /usr/bin/python3.12; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    local v
    v="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -V | tail -n1 || true)"
    if [[ -n "$v" && -x "$(pyenv root)/versions/$v/bin/python3" ]]; then
      echo "$(pyenv root)/versions/$v/bin/python3"; return 0
    fi
  fi
  return 1
}

ignore_requires=()
if ! py="$(find_python)"; then
  if command -v python3.11 >/dev/null 2>&1 || python3 -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
    py="$(command -v python3.11 || command -v python3)"
    ignore_requires=(--ignore-requires-python)
    PINS=("${PINS[@]/Django>=4.2,<6.1/Django>=4.2,<6}")
    echo "python-env: no Python 3.12 found; using $py with --ignore-requires-python" >&2
  else
    echo "python-env: FAILED: the cross-language tests need Python 3.12 (or 3.11); none was found (looked for python3.12, pyenv 3.12.x)" >&2
    exit 1
  fi
fi

mkdir -p "$cache"
rm -rf "$venv"
echo "python-env: creating $venv with $py" >&2
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${ignore_requires[@]}" "${PINS[@]}" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${EXTRA_NO_DEPS[@]}" >&2
"$venv/bin/python" - <<'PY' >&2
import importlib.metadata as m
for p in ["openedx-events", "edx-event-bus-redis", "edx-event-bus-kafka", "confluent-kafka", "pulsar-client", "pulsar-lite"]:
    print(f"python-env: {p}=={m.version(p)}")
PY
touch "$venv/.complete"
echo "$venv/bin/python"

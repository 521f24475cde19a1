#!/usr/bin/env bash
# Hostile inputs through every parser of wire bytes (Avro with every catalog
# schema and hostile writer schemas, schema texts, isoformat times,
# CloudEvents headers, Redis entries, Confluent framing, Pulsar properties):
# no panic, and no input makes a parser hold more than 64 KiB + 64 bytes per
# input byte at once.
#
#   scripts/fuzz.sh            # 2000 inputs per target, seed 0 (as CI runs it)
#   scripts/fuzz.sh 200000     # more
#   scripts/fuzz.sh 200000 --random   # a new seed (printed, to reproduce)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p event-bus-fuzz
exec target/release/event-bus-fuzz "$@"

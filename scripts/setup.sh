#!/usr/bin/env bash
# Prepare a machine for the full test suite, idempotently:
#   - Debian packages the builds and tests need (protoc for the Pulsar
#     client, promtool from prometheus; its server is not started);
#   - the local services the tests use (Redis, NATS, RabbitMQ, PostgreSQL,
#     MariaDB), started if down, required;
#   - the tansu Kafka-compatible broker, built once into ~/.cargo/bin;
#   - the Python venv with the pinned Python peers (scripts/python-env.sh).
# Everything it installs lives outside the checkout and is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*" >&2; }

# --- Debian packages ---------------------------------------------------------
need_pkgs=()
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)            # the Pulsar client
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || need_pkgs+=(libssl-dev)               # Kafka TLS (rdkafka ssl)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)                   # promtool check metrics
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

# --- Services ----------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis on 6379"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2 || redis-server --daemonize yes --port 6379 --save "" >&2
  for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { log "FAILED: Redis is not reachable on 127.0.0.1:6379"; exit 1; }

# The machine's other services (NATS with JetStream, RabbitMQ, PostgreSQL,
# MariaDB): started through their service scripts when down, then required.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
require_service() { # port name start-command...
  local port="$1" name="$2"; shift 2
  if ! port_open "$port"; then
    log "starting $name: $*"
    "$@" >&2 2>&1 || true
    for _ in $(seq 150); do port_open "$port" && break; sleep 0.2; done
  fi
  port_open "$port" || { log "FAILED: $name is not reachable on 127.0.0.1:$port"; exit 1; }
}
start_nats() {
  mkdir -p /var/lib/nats-server
  setsid nohup nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
    </dev/null >/dev/null 2>&1 &
}
require_service 4222 "NATS JetStream" start_nats
require_service 5672 RabbitMQ service rabbitmq-server start
require_service 5432 PostgreSQL service postgresql start
require_service 3306 MariaDB service mariadb start

# --- tansu (Kafka-compatible broker) -----------------------------------------
# Built with the SQLite storage engine (libsql) so a broker restart keeps messages.
TANSU_FEATURES="dynostore,libsql"
stamp="$HOME/.cargo/.tansu-features"
if ! command -v tansu >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/tansu" ]]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
if ! [[ -x "$HOME/.cargo/bin/tansu" && "$(cat "$stamp" 2>/dev/null)" == "$TANSU_FEATURES" ]]; then
  log "building tansu with features $TANSU_FEATURES (12-20 minutes on 2 cores, once per machine)"
  cargo install tansu --locked --features "$TANSU_FEATURES" >&2
  echo "$TANSU_FEATURES" > "$stamp"
fi

# --- Python peers ------------------------------------------------------------
scripts/python-env.sh >/dev/null
log "ready"

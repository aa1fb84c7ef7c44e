#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this).
# Installs what the suite needs when missing, starts a private PostgreSQL when none answers on
# 127.0.0.1:5432, then runs formatting, lints, unit and integration tests on both stores, and
# the benchmarks in quick mode so they are known to run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v psql >/dev/null || need_apt+=(postgresql-client)
command -v curl >/dev/null || need_apt+=(curl)
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need_apt+=(postgresql); fi
# The real relying parties of tests/it/clients.rs: Node.js for openid-client and Playwright,
# Python's venv for authlib, Debian's Chromium for the browser.
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
# The audit sinks' receiver: rsyslog with its GnuTLS driver for syslog over TLS.
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
dpkg -s rsyslog-gnutls >/dev/null 2>&1 || need_apt+=(rsyslog-gnutls)
# The NATS JetStream sink's server (the tests start their own on a random port).
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# PostgreSQL: the local server when it answers, else a throwaway one on a random port
# (ANNALS_TEST_PRIVATE_PG=1 forces the throwaway one).
PG_TMP=""
as_pg_owner() { # initdb and pg_ctl refuse to run as root: use nobody then
  if [ "$(id -u)" = 0 ]; then su nobody -s /bin/sh -c "$*"; else sh -c "$*"; fi
}
cleanup() {
  if [ -n "$PG_TMP" ]; then
    as_pg_owner "'$PG_BIN/pg_ctl' -D '$PG_TMP/data' -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
  fi
}
trap cleanup EXIT
if [ -z "${ANNALS_TEST_PG:-}" ]; then
  if [ "${ANNALS_TEST_PRIVATE_PG:-0}" != 1 ] && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
     && psql -h 127.0.0.1 -U postgres -Atc 'select 1' postgres >/dev/null 2>&1; then
    export ANNALS_TEST_PG="postgres://postgres@127.0.0.1:5432/postgres"
  else
    PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1 || command -v initdb)")
    PG_TMP=$(mktemp -d)
    chmod 755 "$PG_TMP"
    [ "$(id -u)" = 0 ] && chown nobody "$PG_TMP"
    port=$(( 20000 + RANDOM % 20000 ))
    log "starting a throwaway PostgreSQL on 127.0.0.1:$port"
    as_pg_owner "'$PG_BIN/initdb' -D '$PG_TMP/data' -U postgres -A trust >/dev/null"
    as_pg_owner "'$PG_BIN/pg_ctl' -D '$PG_TMP/data' -o '-c listen_addresses=127.0.0.1 -p $port -k $PG_TMP' -l '$PG_TMP/log' -w start >/dev/null"
    export ANNALS_TEST_PG="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
log "PostgreSQL for tests: $ANNALS_TEST_PG"

log "relying parties for the client tests (tests/clients)"
npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
[ -x tests/clients/.venv/bin/python ] || python3 -m venv tests/clients/.venv
tests/clients/.venv/bin/pip install -q --disable-pip-version-check -r tests/clients/requirements.txt

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test (unit and integration, SQLite and PostgreSQL)"
cargo test --workspace --all-targets


log "load-tool scenarios (quick mode, debug build: they must run; figures come from scripts/bench.sh)"
BENCH_PROFILE=debug BENCH_QUICK=1 OUT="$(mktemp)" scripts/bench.sh
BENCH_PROFILE=debug BENCH_QUICK=1 BENCH_NO_BUILD=1 OUT="$(mktemp)" scripts/bench-oidc.sh

#!/usr/bin/env bash
# Where a login's CPU goes, per login, measured by the kernel's per-thread clocks rather than
# by sampling: the server on core 0 under the authorization-code login (4 connections, load on
# core 1), `perf stat --per-thread -e task-clock` over the middle of the run, logins counted
# from the server's own metrics over the same window; and the argon2id ceiling's CPU per hash
# (`perf stat -e task-clock` on `annals-load argon2`) right before and right after.
#
# It splits the gap between the login rate and the hashing ceiling (benches/README.md) into
# hashing that runs slower in the server than alone ("slow") and the work of every other
# thread ("rest", with each thread name's share). Both are CPU time, so a machine that slows
# down during a run moves them together and their ratio holds better than rates measured
# minutes apart. Analysis only (needs `perf`); CI does not run it.
#
# Usage: RUNS=3 scripts/login-cpu.sh  (release binaries under $CARGO_TARGET_DIR or target/)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
RUNS=${RUNS:-3}
command -v perf > /dev/null || { echo "login-cpu.sh needs perf (linux-perf)" >&2; exit 1; }
TMP=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# CPU milliseconds per argon2id hash on core 0, the server idle.
ceiling() {
  taskset -c 0 perf stat -x, -e task-clock "$BIN/annals-load" argon2 --threads 1 --seconds 5 \
    2> "$TMP/ceiling.perf" > "$TMP/ceiling.json"
  python3 - "$TMP/ceiling.perf" "$TMP/ceiling.json" <<'PY'
import json, sys
ms = float(open(sys.argv[1]).read().split(',')[0])
hashes = json.load(open(sys.argv[2]))['result']['hashes_per_s'] * 5
print(f"{ms / hashes:.3f}")
PY
}

# Successful token responses so far: one per completed login.
logins() {
  curl -fsS "$ADDR/metrics" | awk '/^annals_http_request_duration_seconds_count/ && /token/ && /status="200"/ {s += $2} END {print s + 0}'
}

for run in $(seq "$RUNS"); do
  before=$(ceiling)
  rm -rf "$TMP/node" "$TMP/realm"; mkdir -p "$TMP/node" "$TMP/realm"
  cp benches/realm.json "$TMP/realm/bench.json"
  ANNALS_BOOTSTRAP_ADMIN_PASSWORD=bench taskset -c 0 "$BIN/annals" serve --listen 127.0.0.1:0 \
    --data-dir "$TMP/node" --import-realm "$TMP/realm" > "$TMP/node/out" 2> "$TMP/node/err" &
  SERVER_PID=$!
  ADDR=""
  for _ in $(seq 600); do ADDR=$(sed -n 's/^Annals is listening on //p' "$TMP/node/out"); [ -n "$ADDR" ] && break; sleep 0.1; done
  for _ in $(seq 600); do curl -fsS "$ADDR/health/ready" > /dev/null 2>&1 && break; sleep 0.1; done
  [ -n "$ADDR" ] || { cat "$TMP/node/err"; exit 1; }
  taskset -c 1 "$BIN/annals-load" oidc --host "${ADDR#http://}" --flow login --client web --secret web-secret \
    --connections 4 --seconds 13 --cold-tokens 10 > "$TMP/load.json" &
  load=$!
  sleep 3
  first=$(logins)
  perf stat --per-thread -x, -e task-clock -p "$SERVER_PID" -- sleep 8 2> "$TMP/threads.perf"
  last=$(logins)
  wait "$load"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  after=$(ceiling)
  python3 - "$TMP/threads.perf" "$first" "$last" "$before" "$after" "$run" <<'PY'
import json, sys
path, first, last, before, after, run = sys.argv[1:]
n = float(last) - float(first)
per_name, hashing, rest = {}, 0.0, 0.0
for line in open(path):
    f = line.strip().split(',')
    if len(f) < 3 or not f[1].replace('.', '', 1).isdigit():
        continue
    name, ms = f[0].rsplit('-', 1)[0], float(f[1])
    per_name[name] = per_name.get(name, 0.0) + ms
    # The blocking pool's threads (named like the runtime's) hash passwords: each that ran
    # for more than a tenth of the 8 s window. The runtime's own workers use about 1%.
    if name.startswith('tokio-rt-worker') and ms > 800:
        hashing += ms
    else:
        rest += ms
ceiling = (float(before) + float(after)) / 2
print(json.dumps({
    "run": int(run), "label": "login_cpu", "logins": int(n),
    "hash_ms_per_login": round(hashing / n, 3), "ceiling_ms_per_hash": round(ceiling, 3),
    "ceiling_before_after": [float(before), float(after)],
    "hash_slower_pct": round(100 * (hashing / n / ceiling - 1), 1),
    "rest_us_per_login": round(1000 * rest / n),
    "by_thread_us": {k: round(1000 * v / n) for k, v in sorted(per_name.items(), key=lambda x: -x[1]) if v / n > 0.005},
    "cpu_ratio_pct": round(100 * ceiling / ((hashing + rest) / n), 1),
}))
PY
done

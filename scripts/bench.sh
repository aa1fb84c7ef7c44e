#!/usr/bin/env bash
# The issue-2 figures: append throughput (64 writers) and single-writer latency on SQLite and
# PostgreSQL, read-model rebuild rate, actor activation latency, idle memory with 100,000
# users and 1,000 clients. Each figure comes with a baseline measured in the same run.
# Results: one JSON object per line in $OUT (default benches/results.ndjson) and a summary.
# BENCH_QUICK=1 runs every scenario at a small size (CI uses this to keep them working).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${BENCH_PROFILE:-release}
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-3}
OUT=${OUT:-benches/results.ndjson}
if [ "$QUICK" = 1 ]; then RUNS=1; N=2000; USERS=2000; CLIENTS=50; REBUILD_N=5000; else N=100000; USERS=100000; CLIENTS=1000; REBUILD_N=300000; fi
PG_ADMIN=${ANNALS_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}

if [ "$PROFILE" = release ]; then DIR=release; else DIR=debug; fi
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --profile "$([ "$DIR" = debug ] && echo dev || echo release)" --bins -q
BIN=${CARGO_TARGET_DIR:-target}/$DIR
LOAD=$BIN/annals-load
ANNALS=$BIN/annals
TMP=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
: > "$OUT"
pg_db() { # creates a database, prints its URL
  local name="annals_bench_$RANDOM$RANDOM"
  psql "$PG_ADMIN" -qAtc "CREATE DATABASE $name" >/dev/null
  echo "${PG_ADMIN%/*}/$name"
}
pg_drop() { psql "$PG_ADMIN" -qAtc "DROP DATABASE IF EXISTS ${1##*/} WITH (FORCE)" >/dev/null; }
record() { echo "$1" | tee -a "$OUT"; }

for run in $(seq "$RUNS"); do
  record "$("$LOAD" append --database-url "$TMP/a$run.db" --writers 64 --events "$N" | sed "s/^{/{\"run\":$run,\"label\":\"sqlite_64_writers\",/")"
  record "$("$LOAD" append --database-url "$TMP/s$run.db" --writers 1 --events $((N / 20)) | sed "s/^{/{\"run\":$run,\"label\":\"sqlite_1_writer\",/")"
  url=$(pg_db)
  record "$("$LOAD" append --database-url "$url" --writers 64 --events "$N" | sed "s/^{/{\"run\":$run,\"label\":\"postgres_64_writers\",/")"
  pg_drop "$url"; url=$(pg_db)
  record "$("$LOAD" append --database-url "$url" --writers 1 --events $((N / 20)) | sed "s/^{/{\"run\":$run,\"label\":\"postgres_1_writer\",/")"
  pg_drop "$url"
done

record "$("$LOAD" rebuild --database-url "$TMP/rebuild.db" --runs "$RUNS" --events "$REBUILD_N" | sed 's/^{/{"label":"rebuild_sqlite",/')"
record "$("$LOAD" activation --database-url "$TMP/activation.db" --streams 200 --events 100 | sed 's/^{/{"label":"activation_sqlite",/')"

# Audit delivery to a real rsyslogd: catch-up from a backlog, then latency at 5,000 events/s.
if [ "$QUICK" = 1 ]; then SINK_BACKLOG=2000; SINK_S=2; else SINK_BACKLOG=200000; SINK_S=20; fi
RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
record "$("$LOAD" sink --database-url "$TMP/sink.db" --backlog "$SINK_BACKLOG" --rate 5000 --seconds "$SINK_S" --rsyslog "$RSYSLOGD" | sed 's/^{/{"label":"sink_rsyslog",/')"

# `annals timeline` on PostgreSQL: one user (300 sessions) in a 10,000,000-event log.
if [ "$QUICK" = 1 ]; then TL_N=20000; else TL_N=10000000; fi
url=$(pg_db)
record "$("$LOAD" timeline --database-url "$url" --events "$TL_N" --sessions 300 --runs 7 | sed 's/^{/{"label":"timeline_postgres",/')"
pg_drop "$url"

# Idle resident memory: an empty node (baseline) and one holding 100,000 users and 1,000 clients.
rss_of() { # data dir -> VmRSS in kB once ready and idle
  local dir=$1
  ANNALS_BOOTSTRAP_ADMIN_PASSWORD=bench "$ANNALS" serve --listen 127.0.0.1:0 --data-dir "$dir" > "$dir/out" 2>/dev/null &
  SERVER_PID=$!
  local addr=""
  for _ in $(seq 600); do addr=$(sed -n 's/^Annals is listening on //p' "$dir/out"); [ -n "$addr" ] && break; sleep 0.1; done
  for _ in $(seq 600); do curl -fsS "$addr/health/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 3
  local rss; rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  echo "$rss"
}
mkdir -p "$TMP/empty" "$TMP/full"
base_kb=$(rss_of "$TMP/empty")
"$LOAD" seed --database-url "$TMP/full/annals.db" --users "$USERS" --clients "$CLIENTS" >/dev/null
full_kb=$(rss_of "$TMP/full")
record "{\"label\":\"idle_rss\",\"users\":$USERS,\"clients\":$CLIENTS,\"result\":{\"rss_mb\":$((full_kb / 1024)),\"baseline_empty_rss_mb\":$((base_kb / 1024))}}"

python3 - "$OUT" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(label, key):
    v = [r["result"][key] for r in rows if r.get("label") == label]
    return st.median(v) if v else float("nan")
for store in ("sqlite", "postgres"):
    many, one = med(f"{store}_64_writers", "events_per_s"), med(f"{store}_1_writer", "events_per_s")
    print(f"{store}: 64 writers {many:,.0f} events/s (median); 1 writer {one:,.0f} events/s, "
          f"p50 {med(f'{store}_1_writer','p50_ms'):.2f} ms p99 {med(f'{store}_1_writer','p99_ms'):.2f} ms; group commit gain x{many/one:.1f}")
r = next(r for r in rows if r["label"] == "rebuild_sqlite")["result"]
print(f"rebuild: {r['events_per_s']:,.0f} events/s (baseline read+decode {r['baseline_read_decode_per_s']:,.0f}/s, ratio {r['ratio_to_baseline']:.2f})")
k = next(r for r in rows if r["label"] == "sink_rsyslog")["result"]
print(f"syslog through rsyslogd: catch-up {k['catch_up_records_per_s']:,.0f} records/s (read {k['baseline_read_all_events_per_s']:,.0f}/s); "
      f"at {k['steady_events_per_s']:,.0f} events/s append-to-file p50 {k['append_to_receiver_p50_ms']:.2f} ms p99 {k['append_to_receiver_p99_ms']:.2f} ms")
t = next(r for r in rows if r["label"] == "timeline_postgres")
print(f"timeline: {t['result']['timeline_median_ms']:.1f} ms median over {t['events']:,} events, {t['records']} records "
      f"(baseline index + read {t['result']['baseline_index_and_read_median_ms']:.1f} ms)")
a = next(r for r in rows if r["label"] == "activation_sqlite")["result"]
print(f"activation (100 events): p50 {a['p50_ms']:.3f} ms p99 {a['p99_ms']:.3f} ms (baseline stream read p99 {a['baseline_read_p99_ms']:.3f} ms)")
m = next(r for r in rows if r["label"] == "idle_rss")
print(f"idle RSS with {m['users']} users / {m['clients']} clients: {m['result']['rss_mb']} MB (empty node {m['result']['baseline_empty_rss_mb']} MB)")
PY

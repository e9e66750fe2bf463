#!/usr/bin/env bash
# bench/record-store.sh: the PostgreSQL record store (issue 19), against a local PostgreSQL this script starts
# (Debian's package, a temp data directory, a free loopback port, default durability: fsync and synchronous
# commit on).
#
#   1. shipping throughput: SHIP_N records written by the real writer (`concierge audit generate`: a real
#      chain with checkpoints), then `concierge audit ship --batch BATCH --connections C` into an empty store,
#      for each C in SHIP_CONNECTIONS; records/s;
#   2. catch-up: an hour at 1k records/s (CATCHUP_N = 3.6 M records) waited on local disk while the store was
#      away; the time `audit ship` takes to bring the store level once it is back;
#   3. the reports over REPORT_N rows (bench/experiments_records.py --with-decisions: half experiment records,
#      half decisions, two months) in a store also holding step 2's records: `experiments report` and
#      `audit stats` from the store, and from the union of the two folders for comparison (equal answers);
#   4. (PROXY=1) the proxy's own throughput while it ships: bench/run.sh on the concierge-ids target with and
#      without AUDIT_POSTGRES (the shipper's thread is in the proxy's process; its CPU counts in the proxy's),
#      with PostgreSQL moved to core PG_CPU (default 0, the load generator's; PG_CPU=all leaves it unpinned).
#
# Knobs: SHIP_N=1000000 CATCHUP_N=3600000 REPORT_N=10000000 BATCH=5000 SHIP_CONNECTIONS="1 2 3" (step 1, one
#        run each; the rest ship with the default, 2) PROXY=1 REPEAT=3 (for run.sh)
#        SKIP_BUILD=1 CONCIERGE_BIN=… KEEP_TMP=1 PG_SHARED_BUFFERS=1GB PG_CPU=0
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHIP_N=${SHIP_N:-1000000}
CATCHUP_N=${CATCHUP_N:-3600000}
REPORT_N=${REPORT_N:-10000000}
BATCH=${BATCH:-5000}
SHIP_CONNECTIONS=${SHIP_CONNECTIONS:-1 2 3}
PROXY=${PROXY:-1}
PG_SHARED_BUFFERS=${PG_SHARED_BUFFERS:-1GB}
CONCIERGE_BIN=${CONCIERGE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/production/concierge}
say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [[ -z ${SKIP_BUILD:-} ]]; then
  say "building concierge: cargo build --profile production"
  (cd "$REPO" && cargo build --profile production) >&2
fi
[[ -x $CONCIERGE_BIN ]] || die "no binary at $CONCIERGE_BIN"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z $PGBIN || ! -x $PGBIN/initdb ]]; then
  "$REPO/scripts/setup-postgres" >&2
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

TMP=$(mktemp -d /tmp/concierge-record-store.XXXXXX)
AS=()
if [[ $(id -u) == 0 ]]; then
  AS=(runuser -u postgres --)
  chown postgres "$TMP"
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -m fast stop >/dev/null 2>&1 || true
  [[ -n ${KEEP_TMP:-} ]] || rm -rf "$TMP"
}
trap cleanup EXIT
say "PostgreSQL ($PGBIN) on 127.0.0.1:$PORT, data in $TMP/pg"
"${AS[@]}" "$PGBIN/initdb" -D "$TMP/pg" -U concierge --auth-local=trust --auth-host=trust -E UTF8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w \
  -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 -c shared_buffers=$PG_SHARED_BUFFERS -c max_wal_size=8GB" start >/dev/null
URL="postgres://concierge@127.0.0.1:$PORT/postgres?sslmode=disable"
psql() { "$PGBIN/psql" -X -q -t -A -h 127.0.0.1 -p "$PORT" -U concierge -d postgres -c "$1"; }
"$CONCIERGE_BIN" audit migrate --postgres "$URL" >&2

timed() { # label, command…: wall seconds and max RSS of the command
  local label=$1; shift
  /usr/bin/time -f "%e %M %U" -o "$TMP/time" "$@" >"$TMP/out" 2>"$TMP/err" || { cat "$TMP/err" >&2; die "$label failed"; }
  read -r wall rss _ <"$TMP/time"
  printf '%s\t%s s\t%s MiB\n' "$label" "$wall" "$((rss / 1024))"
}
rate() { python3 -c "print(f'{$1 / $2:,.0f}')"; }
KEY=$TMP/signing.key
"$CONCIERGE_BIN" audit keygen --out "$KEY" >/dev/null

echo "## record store benchmark, $(date -u +%FT%TZ), commit $(cd "$REPO" && git rev-parse --short HEAD), $(nproc) cores"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), shared_buffers=$PG_SHARED_BUFFERS, fsync on, synchronous_commit on"

# 1. Shipping throughput.
mkdir -p "$TMP/ship"; echo "bench-ship" >"$TMP/ship/instance"
say "writing $SHIP_N records with the real writer"
"$CONCIERGE_BIN" audit generate "$TMP/ship" --key "$KEY" --count "$SHIP_N" --window 4096 >/dev/null
for c in $SHIP_CONNECTIONS; do
  # Each into an empty store of its own (a database each), the figures side by side.
  psql "CREATE DATABASE ship_c$c" >/dev/null
  url="postgres://concierge@127.0.0.1:$PORT/ship_c$c?sslmode=disable"
  psql "CHECKPOINT" >/dev/null
  out=$(timed "ship $SHIP_N records (batch $BATCH, $c connection(s))" "$CONCIERGE_BIN" audit ship "$TMP/ship" --postgres "$url" --batch "$BATCH" --connections "$c")
  echo "$out"
  wall=$(echo "$out" | cut -f2 | cut -d' ' -f1)
  echo "shipping throughput, $c connection(s): $(rate "$SHIP_N" "$wall") records/s (client CPU $(cut -d' ' -f3 "$TMP/time") s)"
done

# 2. Catch-up after an hour of downtime at 1k records/s.
mkdir -p "$TMP/catchup"; echo "bench-catchup" >"$TMP/catchup/instance"
say "writing $CATCHUP_N records (an hour at 1k/s) while the store is away"
"$CONCIERGE_BIN" audit generate "$TMP/catchup" --key "$KEY" --count "$CATCHUP_N" --window 4096 >/dev/null
out=$(timed "catch-up: $CATCHUP_N records waiting" "$CONCIERGE_BIN" audit ship "$TMP/catchup" --postgres "$URL" --batch "$BATCH")
echo "$out"
wall=$(echo "$out" | cut -f2 | cut -d' ' -f1)
echo "catch-up: $(rate "$CATCHUP_N" "$wall") records/s; an hour of records at 1k/s shipped in $wall s"

# 3. The reports over REPORT_N rows.
half=$((REPORT_N / 2))
mkdir -p "$TMP/report"; echo "bench-report" >"$TMP/report/instance"
say "writing $REPORT_N records (experiments and decisions) and shipping them"
python3 "$REPO/bench/experiments_records.py" "$TMP/report" "$half" --with-decisions
out=$(timed "ship $REPORT_N report records" "$CONCIERGE_BIN" audit ship "$TMP/report" --postgres "$URL" --batch "$BATCH")
echo "$out"
psql "VACUUM ANALYZE concierge_record" >/dev/null
echo "rows in the store: $(psql "SELECT count(*) FROM concierge_record"), size $(psql "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'concierge_record'::regclass")"
for i in 1 2 3; do
  timed "experiments report --postgres (run $i)" "$CONCIERGE_BIN" experiments report --postgres "$URL" --format json
done
cp "$TMP/out" "$TMP/report-store.json"
# The store also holds the catch-up instance's records (exposures among them): the folders' union is the
# same records.
timed "experiments report DIR DIR (the two folders)" "$CONCIERGE_BIN" experiments report "$TMP/report" "$TMP/catchup" --format json
cmp -s "$TMP/out" "$TMP/report-store.json" && echo "the store's report equals the folders'" || echo "REPORTS DIFFER"
for i in 1 2; do
  timed "audit stats --postgres (run $i)" "$CONCIERGE_BIN" audit stats --postgres "$URL" --json
done
cp "$TMP/out" "$TMP/stats-store.json"
timed "audit stats DIR DIR (the two folders)" "$CONCIERGE_BIN" audit stats "$TMP/report" "$TMP/catchup" --json
cmp -s "$TMP/out" "$TMP/stats-store.json" && echo "the store's stats equal the folders'" || echo "STATS DIFFER"
timed "audit export --postgres --account (one company, indexed)" "$CONCIERGE_BIN" audit export --postgres "$URL" --account account-7.example
timed "experiments report --postgres --since 2027-02-20 (a window)" "$CONCIERGE_BIN" experiments report --postgres "$URL" --since 2027-02-20 --format json

# 4. The proxy while it ships.
if [[ $PROXY == 1 ]]; then
  # The database on the load generator's core (PG_CPU, default 0), off the proxy's (run.sh pins the proxy to
  # core 1): in a deployment the store is another machine, and the question is what shipping costs the proxy
  # itself — its shipper thread, which is in its process and on its core. (PG_CPU=all: unpinned.)
  if [[ ${PG_CPU:-0} != all ]]; then
    taskset -a -p -c "${PG_CPU:-0}" "$(head -1 "$TMP/pg/postmaster.pid")" >/dev/null
    for p in $(pgrep -P "$(head -1 "$TMP/pg/postmaster.pid")"); do taskset -p -c "${PG_CPU:-0}" "$p" >/dev/null; done
  fi
  say "bench/run.sh concierge-ids without and with the record store"
  for store in "" "$URL"; do
    echo "### proxy, AUDIT_POSTGRES=${store:+set}${store:-unset}"
    AUDIT_POSTGRES=$store TARGETS="concierge-ids" SKIP_BUILD=1 CONCIERGE_BIN="$CONCIERGE_BIN" \
      REPEAT=${REPEAT:-3} "$REPO/bench/run.sh"
  done
  echo "rows shipped by the proxy: $(psql "SELECT count(*) FROM concierge_record WHERE instance NOT LIKE 'bench-%'")"
fi

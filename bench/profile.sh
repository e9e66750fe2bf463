#!/usr/bin/env bash
# bench/profile.sh: where a request's CPU goes, as instruction counts (repeatable, unlike times on a VM).
#
#   bench/profile.sh [passthrough|tags|ids] [REQUESTS]
#
# Starts an nginx origin serving the benchmark pages (bench/pages.py) and `concierge serve` under
# `valgrind --tool=callgrind` with the bench's configuration for that case (passthrough: no rules, a plain
# page; tags / ids: geo from the MMDB, consent, the company lookup and five changes, as in bench/run.sh), warms
# it up, zeroes the counters, sends REQUESTS (default 2000) keep-alive page requests for page-$PAGE.html over 8
# connections, dumps the counters and prints instructions per request and the top functions (inclusive and
# self). Knobs: PAGE=10k|100k, ACCESS_LOG=1 (the access log on, to a file, as an operator runs it),
# CONCIERGE_BIN (default target/production/concierge; build it with `cargo build --profile production`),
# AUDIT_SINK, ORIGIN_CACHE=1 (the origin marks its pages cacheable and the origin-response cache is on), KEEP_TMP=1. Loopback only; everything is stopped at the end.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
CASE=${1:-passthrough}
REQUESTS=${2:-2000}
PAGE=${PAGE:-10k}
ACCESS_LOG=${ACCESS_LOG:-0}
CONCIERGE_BIN=${CONCIERGE_BIN:-$REPO/target/production/concierge}
MMDB=${MMDB:-$REPO/../shared/testdata/maxmind/test-data/GeoIP2-City-Test.mmdb}
for t in valgrind callgrind_annotate callgrind_control nginx python3; do
  command -v "$t" >/dev/null || { echo "profile: $t is missing (apt-get install valgrind nginx)" >&2; exit 2; }
done
[[ -x $CONCIERGE_BIN ]] || { echo "profile: no $CONCIERGE_BIN (cargo build --profile production)" >&2; exit 2; }

TMP=$(mktemp -d -t concierge-profile.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN_PORT=$(free_port)
PORT=$(free_port)
ADMIN_PORT=$(free_port)

mkdir -p "$TMP/www" "$TMP/nginx-tmp"
python3 "$BENCH_DIR/pages.py" "$TMP/www"
chmod -R a+rX "$TMP/www"
USER_LINE=""
[[ $EUID == 0 ]] && USER_LINE="user root root;"
cat >"$TMP/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx-tmp/body;
    proxy_temp_path $TMP/nginx-tmp/proxy;
    fastcgi_temp_path $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx-tmp/uwsgi;
    scgi_temp_path $TMP/nginx-tmp/scgi;
    keepalive_requests 1000000;
    types { text/html html; }
    server { listen 127.0.0.1:$ORIGIN_PORT; root $TMP/www; location / { $( [[ ${ORIGIN_CACHE:-0} == 1 ]] && echo 'expires 1h;' ) } }
}
EOF
nginx -p "$TMP/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" -g 'daemon off;' &
PIDS+=($!)

{
  echo "[[listener]]"
  echo "address = \"127.0.0.1:$PORT\""
  echo "[upstream]"
  echo "url = \"http://127.0.0.1:$ORIGIN_PORT\""
  echo "[log]"
  echo "level = \"$([[ $ACCESS_LOG == 1 ]] && echo info || echo warn)\""
  echo "access_log = $([[ $ACCESS_LOG == 1 ]] && echo true || echo false)"
  echo "[admin]"
  echo "address = \"127.0.0.1:$ADMIN_PORT\""
  echo "[consent]"
  echo "unknown_region = \"opt-out\""
  echo "[audit]"
  echo "dir = \"$TMP/audit\""
  [[ -n ${AUDIT_SINK:-} ]] && echo "sink = \"$AUDIT_SINK\""
  [[ ${ORIGIN_CACHE:-0} == 1 ]] && printf '%s\n' '[cache]' 'enabled = true'
  if [[ $CASE != passthrough ]]; then
    echo "[geo]"
    echo "mmdb = \"$MMDB\""
    echo "[rules]"
    echo "dir = \"$TMP/rules\""
  fi
} >"$TMP/concierge.toml"
if [[ $CASE != passthrough ]]; then
  mkdir -p "$TMP/rules/accounts"
  if [[ $CASE == ids ]]; then set -- '#hero' '#cta' '#top-nav' '#nav-blog'; else set -- 'h1' 'nav a[href="/docs"]' 'nav' 'nav a[href="/blog"]'; fi
  "$BENCH_DIR/account-rule.sh" "$@" >"$TMP/rules/accounts/acme.example.toml"
fi

valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" --dump-instr=no \
  "$CONCIERGE_BIN" serve --config "$TMP/concierge.toml" >"$TMP/concierge.log" 2>"$TMP/concierge.err" &
VG=$!
PIDS+=($VG)
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz" && break
  sleep 0.1
done

load() {  # $1 = requests
  python3 - "$PORT" "$PAGE" "$1" <<'PY'
import http.client, sys
port, page, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(8)]
bad = 0
for i in range(n):
    c = conns[i % len(conns)]
    c.request("GET", f"/page-{page}.html", headers={"Accept": "text/html"})
    r = c.getresponse()
    body = r.read()
    bad += r.status != 200
if bad:
    sys.exit(f"{bad} responses were not 200")
PY
}
load 200                       # warm-up: connections, pools, caches
callgrind_control -z "$VG" >/dev/null
load "$REQUESTS"
callgrind_control -d "$VG" >/dev/null
sleep 0.5
kill -INT "$VG" 2>/dev/null || true
wait "$VG" 2>/dev/null || true
out=$(ls -1 "$TMP"/callgrind.out* | grep -v '\.out$' | tail -n 1 || true)
[[ -n $out ]] || out="$TMP/callgrind.out"
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "case=$CASE page=$PAGE access_log=$ACCESS_LOG requests=$REQUESTS instructions=$total per_request=$((total / REQUESTS))"
echo "--- inclusive (top 40)"
callgrind_annotate --inclusive=yes "$out" 2>/dev/null | sed -n '/file:function/,$p' | head -n 42 | cut -c1-200
echo "--- self (top 30)"
callgrind_annotate "$out" 2>/dev/null | sed -n '/file:function/,$p' | head -n 32 | cut -c1-200

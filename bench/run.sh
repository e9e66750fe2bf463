#!/usr/bin/env bash
# bench/run.sh: side-by-side reverse-proxy benchmark on one machine.
#
# Targets: the nginx origin directly, nginx proxy_pass, haproxy, and `concierge serve`,
# each in front of the same nginx origin serving 10 KiB and 100 KiB HTML pages.
# Personalization targets (issue 5), same pages, 5 changes each:
#   nginx-subfilter  nginx proxy with a geoip2 lookup (MMDB) and sub_filter doing 5 substitutions (one uses
#                    the looked-up country, so the lookup runs); the origin is asked for identity.
#   concierge-tags   concierge with geo (MMDB) + consent + company lookup (account rule file) + 5 actions whose
#                    selectors may match several elements (h1, nav a[href="/docs"], ...): the whole page parsed.
#   concierge-ids    the same with 5 id selectors (#hero, #cta, ...): parsing stops after the last change.
# Both fixed-rate and wrk send "Accept: text/html" (a page request) and no Accept-Encoding.
# Per target and page it measures:
#   * max throughput: wrk -t1 -c$CONNECTIONS -d$DURATION (closed loop), requests/s,
#     the server's CPU µs per request and its RSS;
#   * latency below saturation: bench/loadgen.py at a fixed rate (open loop,
#     corrected for coordinated omission), p50/p99, and CPU µs per request at that
#     same offered load (the headline figure).
# Pinning (2-core default): load generator + origin on core 0, the proxy under test
# alone on core 1. Everything listens on 127.0.0.1 only; every run is time-bounded.
# The whole set is run REPEAT times, targets interleaved round-robin within each round
# (round 1: direct nginx haproxy concierge; round 2: the same order; ...), so drift on the
# machine hits every target alike; each reported figure is the median over the rounds,
# with the min–max spread in a second table. Runtime scales linearly with REPEAT.
#
# Knobs (environment):
#   REPEAT=3          rounds over all targets; figures are medians over the rounds
#   DURATION=10s      wrk run length (also the fixed-rate run length, see RATE_DURATION)
#   RATE_DURATION=    fixed-rate run length (default: $DURATION)
#   RATE=             fixed rate for both pages (req/s); RATE_10K / RATE_100K override it
#   RATE_10K=2000     fixed rate for page-10k.html
#   RATE_100K=1000    fixed rate for page-100k.html
#   CONNECTIONS=32    connections for wrk and for the fixed-rate generator
#   WARMUP=1s         short wrk warm-up before each measured run (0 to skip)
#   TARGETS="direct nginx haproxy concierge"   subset/order of targets; also nginx-subfilter,
#                     concierge-tags, concierge-ids (personalization, see above)
#   MMDB=             GeoIP2 City database for the personalization targets
#                     (default: ../shared/testdata/maxmind/test-data/GeoIP2-City-Test.mmdb)
#   LOAD_CPU=0 ORIGIN_CPU=$LOAD_CPU PROXY_CPU=1   cores (taskset -c)
#   SKIP_BUILD=1      do not run `cargo build --profile production`
#   SKIP_INSTALL=1    never call apt-get (fail if a tool is missing)
#   NGINX_PROXY_EXTRA= extra directives for the nginx proxy's location block, e.g.
#                     "proxy_buffers 8 16k; proxy_buffer_size 16k;" (default: stock nginx)
#   CONCIERGE_BIN=    path of the binary (default: target/production/concierge)
#   KEEP_TMP=1        keep the temp dir (configs, logs) for inspection
#   AUDIT_FSYNC=      audit.fsync for the concierge targets (default: the config default, "batch"; e.g. 100ms)
#   AUDIT_WAIT=       audit.wait for the concierge targets (default: the config default, "durable"; or "accepted")
#   AUDIT_COMMIT_WINDOW=  audit.commit_window for the concierge targets (default: the config default, 2ms)
#   EXPERIMENT=1      the personalization targets also run an experiment governing their rule (Acme treated):
#                     every page writes an exposure record besides its decision record
#   ACCESS_LOG=1      the proxies keep their default access log (nginx: combined format to a file; Concierge:
#                     its access log to stderr, redirected to a file); default 0: logging off on every target
#   LOG_LEVEL=warn    log.level for the concierge targets (binaries before 2026-12-02 printed access lines only
#                     at "info")
#   ORIGIN_CACHE=1    the origin marks its pages cacheable (`expires 1h`: Cache-Control: max-age=3600) and the
#                     concierge targets turn on their origin-response cache ([cache] enabled = true): repeat page
#                     views are served without an origin round trip (measured apart from the uncached targets)
#   AUDIT_POSTGRES=   a PostgreSQL URL: the concierge targets ship their records to it ([audit.postgres], the
#                     shipper's thread in the proxy's process, so its CPU counts in the proxy's; bench/record-store.sh
#                     starts a database and runs this with and without it)
#   AUDIT_SINK=       audit.sink for the concierge targets: "discard-for-benchmarks" measures the proxy without
#                     its records (the decision is made, the record built, nothing serialized or written)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10s}
RATE_DURATION=${RATE_DURATION:-$DURATION}
RATE_10K=${RATE_10K:-${RATE:-2000}}
RATE_100K=${RATE_100K:-${RATE:-1000}}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-1s}
TARGETS=${TARGETS:-direct nginx haproxy concierge}
LOAD_CPU=${LOAD_CPU:-0}
ORIGIN_CPU=${ORIGIN_CPU:-$LOAD_CPU}
PROXY_CPU=${PROXY_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_INSTALL=${SKIP_INSTALL:-0}
KEEP_TMP=${KEEP_TMP:-0}
ACCESS_LOG=${ACCESS_LOG:-0}
LOG_LEVEL=${LOG_LEVEL:-warn}
NGINX_PROXY_EXTRA=${NGINX_PROXY_EXTRA:-}
AUDIT_FSYNC=${AUDIT_FSYNC:-}
AUDIT_WAIT=${AUDIT_WAIT:-}
AUDIT_COMMIT_WINDOW=${AUDIT_COMMIT_WINDOW:-}
AUDIT_SINK=${AUDIT_SINK:-}
AUDIT_POSTGRES=${AUDIT_POSTGRES:-}
ORIGIN_CACHE=${ORIGIN_CACHE:-0}
CONCIERGE_BIN=${CONCIERGE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/production/concierge}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
MMDB=${MMDB:-$REPO/../shared/testdata/maxmind/test-data/GeoIP2-City-Test.mmdb}

ORIGIN_PORT=18080
NGINX_PORT=18081
HAPROXY_PORT=18082
CONCIERGE_PORT=18083
CONCIERGE_ADMIN_PORT=19901
SUBFILTER_PORT=18084
PAGES=(10k 100k)
declare -A PAGE_BYTES=([10k]=10240 [100k]=102400)
declare -A PAGE_RATE=([10k]=$RATE_10K [100k]=$RATE_100K)
# Bytes each page must have through the target being measured (personalized pages differ from the origin's).
declare -A EXPECT_BYTES=()

say() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
# Seconds (float) from "10s", "500ms", "2m", "10".
secs() { awk -v d="$1" 'BEGIN { m = 1; if (d ~ /ms$/) { m = 0.001; sub(/ms$/, "", d) } else if (d ~ /s$/) sub(/s$/, "", d); else if (d ~ /m$/) { m = 60; sub(/m$/, "", d) } else if (d ~ /h$/) { m = 3600; sub(/h$/, "", d) }; print d * m }'; }
ceil() { awk -v x="$1" 'BEGIN { i = int(x); if (i < x) i++; print i }'; }
# Value of "key=value" line in a file (last one wins), or empty.
kv() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

# --------------------------------------------------------------------------- tools
install_tools() {
  local -A want=([nginx]=nginx [haproxy]=haproxy [wrk]=wrk [curl]=curl [python3]=python3
                 [taskset]=util-linux [lscpu]=util-linux [pgrep]=procps [getconf]=libc-bin
                 [timeout]=coreutils [awk]=mawk)
  local cmd pkgs=()
  for cmd in "${!want[@]}"; do
    have "$cmd" || pkgs+=("${want[$cmd]}")
  done
  if ((${#pkgs[@]})); then
    mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
    [[ $SKIP_INSTALL == 1 ]] && die "missing tools (SKIP_INSTALL=1): apt-get install ${pkgs[*]}"
    [[ $EUID == 0 ]] || die "missing tools; as root run: apt-get install ${pkgs[*]}"
    say "installing: ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
    # Debian starts nginx/haproxy system services on install; we never use them
    # (our ports are 18080+), so stop the ones we just installed to keep cores quiet.
    local svc
    for svc in nginx haproxy; do
      [[ " ${pkgs[*]} " == *" $svc "* ]] || continue
      if have systemctl && [[ -d /run/systemd/system ]]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
      elif have service; then
        service "$svc" stop >/dev/null 2>&1 || true
      fi
    done
  fi
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "python3 >= 3.8 needed"
  if [[ " $TARGETS " == *" nginx-subfilter "* && ! -e $GEOIP2_MODULE ]]; then
    [[ $SKIP_INSTALL == 1 ]] && die "missing $GEOIP2_MODULE (SKIP_INSTALL=1): apt-get install libnginx-mod-http-geoip2"
    [[ $EUID == 0 ]] || die "missing the nginx geoip2 module; as root run: apt-get install libnginx-mod-http-geoip2"
    say "installing: libnginx-mod-http-geoip2"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnginx-mod-http-geoip2 >&2
  fi
}
GEOIP2_MODULE=/usr/lib/nginx/modules/ngx_http_geoip2_module.so

# --------------------------------------------------------------------------- processes
STARTED=()
TMP=""
proc_alive() {  # running and not a zombie
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z ]]
}
pid_tree() {  # pid and all descendants
  local c
  echo "$1"
  for c in $(pgrep -P "$1" 2>/dev/null || true); do pid_tree "$c"; done
}
stop_proc() {  # TERM, wait up to 5 s, then KILL the whole tree
  local pid=$1 tree i
  proc_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  tree=$(pid_tree "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do proc_alive "$pid" || break; sleep 0.1; done
  # shellcheck disable=SC2086
  kill -KILL $tree 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# Stops a process from STARTED and forgets it, so that a later cleanup can never signal
# a recycled pid (proxies are started and stopped once per round).
stop_started() {
  local pid=$1 i
  stop_proc "$pid"
  for i in "${!STARTED[@]}"; do [[ ${STARTED[$i]} == "$pid" ]] && unset 'STARTED[i]'; done
  return 0
}
cleanup() {
  set +e
  local pid
  for pid in "${STARTED[@]}"; do stop_proc "$pid"; done
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ $KEEP_TMP == 1 ]]; then say "kept $TMP"; else rm -rf "$TMP"; fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Poll a URL until it answers 2xx, at most $2 seconds.
wait_http() {
  local url=$1 limit=$2 pid=${3:-} deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    [[ -n $pid ]] && ! proc_alive "$pid" && return 1
    sleep 0.1
  done
  return 1
}

# Sum of utime+stime (fields 14, 15 of /proc/PID/stat, clock ticks) over the pids.
cpu_ticks() {
  local total=0 pid s f
  for pid in "$@"; do
    s=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    s=${s##*) }          # drop "pid (comm) ": remaining fields start at field 3
    read -r -a f <<<"$s"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
# Sum of VmRSS (kB) over the pids.
rss_kb() {
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

cpu_mask() { local m=1 i; for ((i = 0; i < $1; i++)); do m+=0; done; echo "$m"; }

# --------------------------------------------------------------------------- setup
[[ $(uname -s) == Linux ]] || die "Linux only (/proc, taskset)"
[[ $REPEAT =~ ^[0-9]+$ ]] && ((10#$REPEAT >= 1)) || die "REPEAT must be a positive integer (got '$REPEAT')"
REPEAT=$((10#$REPEAT))
install_tools
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
((PROXY_CPU < NPROC && LOAD_CPU < NPROC && ORIGIN_CPU < NPROC)) || die "CPU index >= nproc ($NPROC)"
((PROXY_CPU != LOAD_CPU && PROXY_CPU != ORIGIN_CPU)) || die "PROXY_CPU must differ from LOAD_CPU/ORIGIN_CPU"

if [[ " $TARGETS " == *" concierge"* && $SKIP_BUILD != 1 ]]; then
  have cargo || die "cargo not found (install Rust, or SKIP_BUILD=1 with CONCIERGE_BIN=...)"
  say "building concierge: cargo build --profile production"
  (cd "$REPO" && cargo build --profile production) >&2
fi

if [[ " $TARGETS " == *" nginx-subfilter "* || " $TARGETS " == *" concierge-tags "* || " $TARGETS " == *" concierge-ids "* ]]; then
  [[ -f $MMDB ]] || die "MMDB=$MMDB not found (the personalization targets need a GeoIP2 City database)"
  MMDB=$(cd "$(dirname "$MMDB")" && pwd)/$(basename "$MMDB")
fi

for p in $ORIGIN_PORT $NGINX_PORT $HAPROXY_PORT $CONCIERGE_PORT $CONCIERGE_ADMIN_PORT $SUBFILTER_PORT; do
  port_in_use "$p" && die "port $p on 127.0.0.1 is already in use"
done

TMP=$(mktemp -d -t concierge-bench.XXXXXX)
chmod 755 "$TMP"
mkdir -p "$TMP/www" "$TMP/raw"
DATE=$(date +%F)
RAW_DIR="$OUT_DIR/raw-$DATE"
mkdir -p "$OUT_DIR" "$RAW_DIR"
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

# Realistic, deterministic HTML of exactly the given sizes.
python3 "$BENCH_DIR/pages.py" "$TMP/www"
for pg in "${PAGES[@]}"; do
  [[ $(stat -c %s "$TMP/www/page-$pg.html") == "${PAGE_BYTES[$pg]}" ]] || die "page-$pg.html has the wrong size"
done
chmod -R a+rX "$TMP/www"

# nginx runs its workers as "nobody" when started as root, and Debian has no "nobody"
# group, so name the user explicitly (only meaningful, and only allowed, as root).
NGINX_USER=""
[[ $EUID == 0 ]] && NGINX_USER="user root root;"
nginx_common() {  # $1 = name
  cat <<EOF
$NGINX_USER
worker_processes 1;
pid $TMP/nginx-$1.pid;
error_log $TMP/nginx-$1-error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {  # $1 = name
  local log="access_log off;"
  # With ACCESS_LOG=1 the proxies log as they do by default (nginx: the combined format, a write per request, to
  # a file); the origin never logs.
  [[ $ACCESS_LOG == 1 && $1 != origin ]] && log="access_log $TMP/nginx-$1-access.log;"
  cat <<EOF
    $log
    client_body_temp_path $TMP/nginx-$1-tmp/body;
    proxy_temp_path $TMP/nginx-$1-tmp/proxy;
    fastcgi_temp_path $TMP/nginx-$1-tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx-$1-tmp/uwsgi;
    scgi_temp_path $TMP/nginx-$1-tmp/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
EOF
}

{
  nginx_common origin
  echo "worker_cpu_affinity $(cpu_mask "$ORIGIN_CPU");"
  cat <<EOF
http {
$(nginx_http_common origin)
    types { text/html html; }
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        location / { $( [[ $ORIGIN_CACHE == 1 ]] && echo 'expires 1h;' ) }
    }
}
EOF
} >"$TMP/nginx-origin.conf"

{
  nginx_common proxy
  echo "worker_cpu_affinity $(cpu_mask "$PROXY_CPU");"
  cat <<EOF
http {
$(nginx_http_common proxy)
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $NGINX_PROXY_EXTRA
        }
    }
}
EOF
} >"$TMP/nginx-proxy.conf"

# nginx doing what the personalization targets do, as far as nginx can: a geoip2 lookup and five substitutions.
{
  echo "load_module $GEOIP2_MODULE;"
  nginx_common subfilter
  echo "worker_cpu_affinity $(cpu_mask "$PROXY_CPU");"
  cat <<EOF
http {
$(nginx_http_common subfilter)
    geoip2 $MMDB {
        \$geoip2_country default=US source=\$remote_addr country iso_code;
    }
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$SUBFILTER_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Accept-Encoding "";
            sub_filter 'id="hero">' 'id="hero">Spend control for Acme Corp: ';
            sub_filter '<a id="cta" href="/docs">' '<a id="cta" class="abm" href="/docs?account=acme.example">';
            sub_filter '</nav>' ' · for Acme Corp</nav>';
            sub_filter '>Blog</a>' '>Acme Corp news</a>';
            sub_filter 'Example Corp.' 'Example Corp. (\$geoip2_country)';
            $NGINX_PROXY_EXTRA
        }
    }
}
EOF
} >"$TMP/nginx-subfilter.conf"

cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    cpu-map 1/1 $PROXY_CPU
    maxconn 4096
    # no "log" line: no logging

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend origin

backend origin
    server origin 127.0.0.1:$ORIGIN_PORT
EOF

# Plain concierge: page requests are classified (no location: unknown_region = opt-out, so no banner is
# injected and the page passes through unchanged); the lookup runs against no sources and a decision record is
# written per page request.
cat >"$TMP/concierge.toml" <<EOF
[[listener]]
address = "127.0.0.1:$CONCIERGE_PORT"

[upstream]
url = "http://127.0.0.1:$ORIGIN_PORT"

[log]
level = "$LOG_LEVEL"
access_log = $( [[ $ACCESS_LOG == 1 ]] && echo true || echo false )

[admin]
address = "127.0.0.1:$CONCIERGE_ADMIN_PORT"

[consent]
unknown_region = "opt-out"

[audit]
dir = "$TMP/audit-plain"
$( [ -n "$AUDIT_FSYNC" ] && echo "fsync = \"$AUDIT_FSYNC\"" )
$( [ -n "$AUDIT_WAIT" ] && echo "wait = \"$AUDIT_WAIT\"" )
$( [ -n "$AUDIT_COMMIT_WINDOW" ] && echo "commit_window = \"$AUDIT_COMMIT_WINDOW\"" )
$( [ -n "$AUDIT_SINK" ] && echo "sink = \"$AUDIT_SINK\"" )
$( [ -n "$AUDIT_POSTGRES" ] && printf '%s\n' '[audit.postgres]' "url = \"$AUDIT_POSTGRES\"" )
$( [[ $ORIGIN_CACHE == 1 ]] && printf '%s\n' '[cache]' 'enabled = true' )
EOF

# Personalization: geo from the MMDB (127.0.0.1 is in no database: unknown_region = opt-out, so the firmographic
# tier is permitted), the company from an account rule file covering loopback, five actions.
for variant in tags ids; do
  mkdir -p "$TMP/rules-$variant/accounts"
  cat >"$TMP/concierge-$variant.toml" <<EOF
[[listener]]
address = "127.0.0.1:$CONCIERGE_PORT"

[upstream]
url = "http://127.0.0.1:$ORIGIN_PORT"

[log]
level = "$LOG_LEVEL"
access_log = $( [[ $ACCESS_LOG == 1 ]] && echo true || echo false )

[admin]
address = "127.0.0.1:$CONCIERGE_ADMIN_PORT"

[geo]
mmdb = "$MMDB"

[consent]
unknown_region = "opt-out"

[rules]
dir = "$TMP/rules-$variant"

[audit]
dir = "$TMP/audit-$variant"
$( [ -n "$AUDIT_FSYNC" ] && echo "fsync = \"$AUDIT_FSYNC\"" )
$( [ -n "$AUDIT_WAIT" ] && echo "wait = \"$AUDIT_WAIT\"" )
$( [ -n "$AUDIT_COMMIT_WINDOW" ] && echo "commit_window = \"$AUDIT_COMMIT_WINDOW\"" )
$( [ -n "$AUDIT_SINK" ] && echo "sink = \"$AUDIT_SINK\"" )
$( [ -n "$AUDIT_POSTGRES" ] && printf '%s\n' '[audit.postgres]' "url = \"$AUDIT_POSTGRES\"" )
$( [[ $ORIGIN_CACHE == 1 ]] && printf '%s\n' '[cache]' 'enabled = true' )
EOF
done
rules_file() { "$BENCH_DIR/account-rule.sh" "$@"; }  # $1 = hero, $2 = cta, $3 = nav, $4 = blog link
if [ -n "${EXPERIMENT:-}" ]; then
  # Every page an exposure: an experiment governing the rule, holding out almost no account (Acme is treated).
  for variant in tags ids; do
    mkdir -p "$TMP/rules-$variant/experiments"
    printf '%s\n' '[experiment]' 'id = "bench"' 'rules = ["acme.example/bench"]' 'control = 0.0001' '' \
      '[[experiment.goal]]' 'id = "never"' 'path = "/never"' >"$TMP/rules-$variant/experiments/bench.toml"
  done
fi
rules_file 'h1' 'nav a[href="/docs"]' 'nav' 'nav a[href="/blog"]' >"$TMP/rules-tags/accounts/acme.example.toml"
rules_file '#hero' '#cta' '#top-nav' '#nav-blog' >"$TMP/rules-ids/accounts/acme.example.toml"

start_nginx() {  # $1 = name, $2 = cpu; echoes the master pid
  mkdir -p "$TMP/nginx-$1-tmp"
  taskset -c "$2" nginx -p "$TMP/" -e "$TMP/nginx-$1-error.log" -c "$TMP/nginx-$1.conf" \
    -g 'daemon off;' >"$TMP/nginx-$1.out" 2>&1 &
  echo $!
}

# --------------------------------------------------------------------------- measuring
DUR_S=$(secs "$DURATION")
RATE_DUR_S=$(secs "$RATE_DURATION")
WARMUP_S=$(secs "$WARMUP")

# Checks that the target serves both pages with the right size (sets EXPECT_BYTES). With $2 = personalized,
# the page must differ from the origin's and name the account.
check_pages() {  # $1 = port, $2 = plain|personalized
  local pg got f
  for pg in "${PAGES[@]}"; do
    f="$TMP/check-$pg.html"
    got=$(curl -sS -o "$f" --max-time 5 -H 'Accept: text/html' -w '%{http_code} %{size_download}' \
      "http://127.0.0.1:$1/page-$pg.html" 2>&1) || true
    if [[ ${2:-plain} == personalized ]]; then
      [[ ${got%% *} == 200 ]] && grep -q 'for Acme Corp' "$f" && ! cmp -s "$f" "$TMP/www/page-$pg.html" \
        || { say "port $1 page-$pg.html: not personalized (got '$got')"; return 1; }
      EXPECT_BYTES[$pg]=${got#* }
    else
      [[ $got == "200 ${PAGE_BYTES[$pg]}" ]] || { say "port $1 page-$pg.html: got '$got'"; return 1; }
      EXPECT_BYTES[$pg]=${PAGE_BYTES[$pg]}
    fi
  done
}

# Round being run (1..REPEAT); raw file suffix ("-rN", empty when REPEAT=1) and log tag.
ROUND=1
rsuf() { ((REPEAT > 1)) && echo "-r$ROUND" || true; }
rtag() { ((REPEAT > 1)) && echo "[round $ROUND/$REPEAT] " || true; }

# measure TARGET ROOT_PID PORT: runs both pages, appends rows to $RESULTS.
measure() {
  local target=$1 root=$2 port=$3 pg url pids t0 t1 f req rps err rss rate cpu_max cpu_fix tag
  tag=$(rtag)
  mapfile -t pids < <(pid_tree "$root")
  say "$tag$target: pids ${pids[*]}"
  for pg in "${PAGES[@]}"; do
    url="http://127.0.0.1:$port/page-$pg.html"
    rate=${PAGE_RATE[$pg]}
    if [[ $WARMUP_S != 0 ]]; then
      timeout 60 taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -H 'Accept: text/html' "$url" >/dev/null 2>&1 || true
    fi
    # 1) max throughput (closed loop)
    f="$RAW_DIR/wrk-$target-$pg$(rsuf).txt"
    say "$tag$target $pg: wrk -t1 -c$CONNECTIONS -d$DURATION"
    t0=$(cpu_ticks "${pids[@]}")
    timeout "$(ceil "$DUR_S + 60")" taskset -c "$LOAD_CPU" \
      wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --timeout 5s -H 'Accept: text/html' -s "$BENCH_DIR/wrk-report.lua" "$url" >"$f" 2>&1 || true
    t1=$(cpu_ticks "${pids[@]}")
    rss=$(rss_kb "${pids[@]}")
    req=$(kv "$f" requests); rps=$(kv "$f" rps); err=$(kv "$f" errors)
    if [[ -z $req || $req == 0 ]]; then
      say "$target $pg: wrk failed:"; sed 's/^/    /' "$f" >&2
      req=0; rps=0; err=${err:-?}
    fi
    cpu_max=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$req" 'BEGIN { if (n > 0) printf "%.2f", d * 1e6 / hz / n; else print "nan" }')
    sleep 1
    # 2) fixed rate (open loop): latency and CPU per request at the same offered load
    f="$RAW_DIR/fixed-$target-$pg$(rsuf).txt"
    say "$tag$target $pg: fixed rate $rate req/s for ${RATE_DURATION}"
    t0=$(cpu_ticks "${pids[@]}")
    timeout "$(ceil "$RATE_DUR_S + 60")" taskset -c "$LOAD_CPU" \
      python3 "$BENCH_DIR/loadgen.py" -R "$rate" -d "$RATE_DURATION" -c "$CONNECTIONS" \
      --expect-bytes "${EXPECT_BYTES[$pg]}" "$url" >"$f" 2>&1 || true
    t1=$(cpu_ticks "${pids[@]}")
    local freq fp50 fp99 ferr finc fach lag
    freq=$(kv "$f" requests); fp50=$(kv "$f" p50_ms); fp99=$(kv "$f" p99_ms)
    ferr=$(kv "$f" errors); finc=$(kv "$f" incomplete)
    ferr=$(( ${ferr:-0} + ${finc:-0} ))
    fach=$(kv "$f" achieved_rps); lag=$(kv "$f" send_lag_p99_ms)
    if [[ -z $freq || $freq == 0 ]]; then
      say "$target $pg: loadgen failed:"; sed 's/^/    /' "$f" >&2
      freq=0; fp50=nan; fp99=nan; fach=0; lag=nan
    fi
    cpu_fix=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$freq" 'BEGIN { if (n > 0) printf "%.2f", d * 1e6 / hz / n; else print "nan" }')
    printf '%s\t%s\t%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$target" "$pg" "$ROUND" "$rps" "$err" "$fp50" "$fp99" "$rate" "$fach" "$ferr" "$cpu_fix" "$cpu_max" \
      "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" "$lag" >>"$RESULTS"
    say "$tag$target $pg: max ${rps} req/s, cpu ${cpu_max} µs/req | @${rate}/s p50 ${fp50} ms p99 ${fp99} ms, cpu ${cpu_fix} µs/req, rss $((rss / 1024)) MiB"
    sleep 1
  done
}

skip_target() {  # $1 target, $2 reason
  say "$(rtag)$1: $2"
  local pg
  for pg in "${PAGES[@]}"; do printf '%s\t%s\t%s\t%s\n' "$1" "$pg" "$ROUND" "$2" >>"$RESULTS"; done
}

# --------------------------------------------------------------------------- run
say "temp dir $TMP; origin on cpu $ORIGIN_CPU, load generator on cpu $LOAD_CPU, proxy on cpu $PROXY_CPU"
ORIGIN_PID=$(start_nginx origin "$ORIGIN_CPU")
STARTED+=("$ORIGIN_PID")
wait_http "http://127.0.0.1:$ORIGIN_PORT/page-10k.html" 10 "$ORIGIN_PID" \
  || { cat "$TMP"/nginx-origin*.{out,log} >&2 2>/dev/null; die "origin nginx did not start"; }
check_pages "$ORIGIN_PORT" plain || die "origin does not serve the pages"

# run_target TARGET: starts the proxy (the origin is already up), measures it, stops it,
# so only one proxy runs at a time. Uses $ROUND.
run_target() {
  local target=$1 pid="" port
  case $target in
    direct)
      check_pages "$ORIGIN_PORT" plain
      measure direct "$ORIGIN_PID" "$ORIGIN_PORT"
      return 0 ;;
    nginx-subfilter)
      pid=$(start_nginx subfilter "$PROXY_CPU"); STARTED+=("$pid")
      if ! wait_http "http://127.0.0.1:$SUBFILTER_PORT/page-10k.html" 10 "$pid"; then
        cat "$TMP"/nginx-subfilter*.{out,log} >&2 2>/dev/null; skip_target nginx-subfilter "failed to start"; stop_started "$pid"; return 0
      fi
      port=$SUBFILTER_PORT ;;
    concierge-tags|concierge-ids)
      if [[ ! -x $CONCIERGE_BIN ]]; then
        skip_target "$target" "binary missing"; return 0
      fi
      taskset -c "$PROXY_CPU" "$CONCIERGE_BIN" serve --config "$TMP/$target.toml" >"$TMP/$target.log" 2>&1 &
      pid=$!; STARTED+=("$pid")
      if ! wait_http "http://127.0.0.1:$CONCIERGE_ADMIN_PORT/readyz" 10 "$pid"; then
        tail -n 30 "$TMP/$target.log" >&2; skip_target "$target" "failed to start (not ready in 10 s)"; stop_started "$pid"; return 0
      fi
      port=$CONCIERGE_PORT ;;
    nginx)
      pid=$(start_nginx proxy "$PROXY_CPU"); STARTED+=("$pid")
      if ! wait_http "http://127.0.0.1:$NGINX_PORT/page-10k.html" 10 "$pid"; then
        cat "$TMP"/nginx-proxy*.{out,log} >&2 2>/dev/null; skip_target nginx "failed to start"; stop_started "$pid"; return 0
      fi
      port=$NGINX_PORT ;;
    haproxy)
      taskset -c "$PROXY_CPU" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
      pid=$!; STARTED+=("$pid")
      if ! wait_http "http://127.0.0.1:$HAPROXY_PORT/page-10k.html" 10 "$pid"; then
        cat "$TMP/haproxy.log" >&2; skip_target haproxy "failed to start"; stop_started "$pid"; return 0
      fi
      port=$HAPROXY_PORT ;;
    concierge)
      if [[ ! -x $CONCIERGE_BIN ]]; then
        skip_target concierge "binary missing"; return 0
      fi
      taskset -c "$PROXY_CPU" "$CONCIERGE_BIN" serve --config "$TMP/concierge.toml" >"$TMP/concierge.log" 2>&1 &
      pid=$!; STARTED+=("$pid")
      if ! wait_http "http://127.0.0.1:$CONCIERGE_ADMIN_PORT/readyz" 10 "$pid"; then
        tail -n 30 "$TMP/concierge.log" >&2; skip_target concierge "failed to start (not ready in 10 s)"; stop_started "$pid"; return 0
      fi
      port=$CONCIERGE_PORT ;;
  esac
  local kind=plain
  case $target in nginx-subfilter|concierge-tags|concierge-ids) kind=personalized ;; esac
  if check_pages "$port" "$kind"; then
    measure "$target" "$pid" "$port"
  else
    skip_target "$target" "wrong response"
  fi
  stop_started "$pid"
  sleep 1
}

for target in $TARGETS; do
  case $target in direct|nginx|haproxy|concierge|nginx-subfilter|concierge-tags|concierge-ids) ;;
    *) die "unknown target '$target' (direct nginx haproxy concierge nginx-subfilter concierge-tags concierge-ids)" ;; esac
done
read -r -a TARGET_LIST <<<"$TARGETS"
# Per target and page: warm-up + wrk + 1 s + fixed rate + 1 s; plus ~2 s per proxy start/stop.
EST_S=$(awk -v r="$REPEAT" -v n="${#TARGET_LIST[@]}" -v p="${#PAGES[@]}" -v w="$WARMUP_S" -v d="$DUR_S" -v f="$RATE_DUR_S" \
  'BEGIN { printf "%d", r * n * (p * (w + d + f + 2) + 2) }')
say "REPEAT=$REPEAT rounds x ${#TARGET_LIST[@]} targets, round-robin; estimated runtime ~$((EST_S / 60)) min $((EST_S % 60)) s"
for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
  if ((REPEAT > 1)); then say "=== round $ROUND/$REPEAT ==="; fi
  for target in "${TARGET_LIST[@]}"; do
    run_target "$target"
  done
done
for f in "$TMP"/nginx-*-error.log "$TMP"/haproxy.log "$TMP"/concierge*.log; do
  [[ -s $f ]] && cp "$f" "$RAW_DIR/" || true
done

# --------------------------------------------------------------------------- report
OUT_MD="$OUT_DIR/results-$DATE.md"
export BENCH_DATE BENCH_CPU BENCH_NPROC BENCH_KERNEL BENCH_VERSIONS BENCH_SETTINGS
BENCH_DATE=$(date '+%F %T %Z')
BENCH_CPU=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
BENCH_NPROC=$NPROC
BENCH_KERNEL=$(uname -r)
BENCH_VERSIONS="$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(haproxy -v 2>&1 | head -n 1 | awk '{print "haproxy " $3}'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1 " " $2}'), concierge $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown), python $(python3 -c 'import platform; print(platform.python_version())')"
BENCH_SETTINGS="${NGINX_PROXY_EXTRA:+nginx proxy extra: [$NGINX_PROXY_EXTRA] }REPEAT=$REPEAT rounds (medians); wrk -t1 -c$CONNECTIONS -d$DURATION; fixed rate $RATE_10K req/s (10k) / $RATE_100K req/s (100k) for $RATE_DURATION over $CONNECTIONS connections (bench/loadgen.py); load generator + origin on cpu $LOAD_CPU/$ORIGIN_CPU, proxy on cpu $PROXY_CPU; CLK_TCK $CLK_TCK"
python3 - "$RESULTS" "$OUT_MD" "$REPEAT" <<'PY'
import math, os, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
repeat = int(sys.argv[3])
names = {"direct": "origin (direct)", "nginx": "nginx", "haproxy": "haproxy", "concierge": "concierge",
         "nginx-subfilter": "nginx geoip2+sub_filter", "concierge-tags": "concierge 5 rewrites (tags)",
         "concierge-ids": "concierge 5 rewrites (ids)"}
KEYS = ["rps", "err", "p50", "p99", "rate", "achieved", "ferr", "cpu_fix", "cpu_max", "rss", "lag"]
def num(s):
    try:
        v = float(s)
        return None if math.isnan(v) else v
    except (TypeError, ValueError):
        return None
def rounds_str(rs):
    return ", ".join(str(r) for r in rs)
# Group the per-round rows by (target, page), in the order of round 1 (= $TARGETS order).
groups = {}
for r in rows:
    d = {"target": r[0], "page": r[1], "round": int(r[2]), "status": r[3]}
    if r[3] == "ok":
        d.update(zip(KEYS, r[4:]))
    groups.setdefault((r[0], r[1]), []).append(d)
data, notes = [], []
for (target, page), runs in groups.items():
    ok = [d for d in runs if d["status"] == "ok"]
    failed = [d for d in runs if d["status"] != "ok"]
    agg = {"target": target, "page": page, "n": len(ok), "total": len(runs), "runs": ok}
    if not ok:
        agg["status"] = "; ".join(dict.fromkeys(d["status"] for d in failed))
        data.append(agg)
        continue
    agg["status"] = "ok"
    # Median (and min/max) of every figure over the rounds that produced it.
    for k in ("rps", "p50", "p99", "cpu_fix", "cpu_max", "rss", "achieved", "lag"):
        vals = [v for v in (num(d[k]) for d in ok) if v is not None]
        agg[k] = statistics.median(vals) if vals else None
        agg[k + "_min"] = min(vals) if vals else None
        agg[k + "_max"] = max(vals) if vals else None
    agg["rate"] = num(ok[0]["rate"])
    data.append(agg)
    for d in failed:
        notes.append(f"{target} {page}: round {d['round']}: {d['status']} (figures are the median of the other rounds)")
    err = [(d["round"], d["err"]) for d in ok if d["err"] not in ("0", "")]
    if err:
        notes.append(f"{target} {page}: wrk reported errors: " + ", ".join(f"{e} in round {r}" for r, e in err))
    ferr = [(d["round"], d["ferr"]) for d in ok if d["ferr"] not in ("0", "")]
    if ferr:
        notes.append(f"{target} {page}: failed/incomplete requests at the fixed rate: " + ", ".join(f"{e} in round {r}" for r, e in ferr))
    rate = agg["rate"]
    sat = [d for d in ok if rate and num(d["achieved"]) is not None and num(d["achieved"]) < 0.95 * rate]
    if sat:
        notes.append(f"{target} {page}: achieved only " + ", ".join(f"{num(d['achieved']):.0f}" + (f" (round {d['round']})" if repeat > 1 else "") for d in sat)
                     + f" of {rate:.0f} req/s at the fixed rate (saturated)")
    elif rate and agg["rps"] and rate > 0.7 * agg["rps"]:
        notes.append(f"{target} {page}: fixed rate {rate:.0f} req/s is above 70% of max {agg['rps']:.0f} req/s: latency is near saturation")
    lags = [(d["round"], num(d["lag"])) for d in ok if num(d["lag"]) is not None and num(d["lag"]) > 1.0]
    if lags:
        notes.append(f"{target} {page}: load generator send lag p99 " + ", ".join(f"{l:.2f} ms" + (f" (round {r})" if repeat > 1 else "") for r, l in lags)
                     + " (the generator itself is busy; latencies are inflated)")
# Ratios to nginx on the same page, from the medians.
nginx = {d["page"]: d for d in data if d["target"] == "nginx" and d["status"] == "ok"}
def ratio(d, key):
    ref = nginx.get(d["page"])
    a, b = d.get(key), ref.get(key) if ref else None
    return f"{a / b:.2f}" if a is not None and b else "n/a"
def fmt(v, nd):
    return "n/a" if v is None else f"{v:.{nd}f}"
def spread(d, key, nd):
    if d.get(key) is None:
        return "n/a"
    return f"{d[key]:.{nd}f} [{d[key + '_min']:.{nd}f}–{d[key + '_max']:.{nd}f}]"
def render(header, table):
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(header)]
    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 2)) if i < 2 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return [line(header), sep] + [line(r) for r in table]
header = ["target", "page", "req/s (max)", "ratio to nginx", "p50 ms", "p99 ms", "p99 ratio to nginx",
          "CPU µs/req (fixed rate)", "ratio", "CPU µs/req (max load)", "RSS MiB"]
table, spread_table = [], []
for d in data:
    name = names.get(d["target"], d["target"])
    if d["status"] != "ok":
        table.append([name, d["page"], d["status"]] + ["-"] * 8)
        notes.append(f"{d['target']} {d['page']}: {d['status']}" + (" (every round)" if repeat > 1 else ""))
        continue
    table.append([name, d["page"], fmt(d["rps"], 0), ratio(d, "rps"), fmt(d["p50"], 3), fmt(d["p99"], 3),
                  ratio(d, "p99"), fmt(d["cpu_fix"], 1), ratio(d, "cpu_fix"), fmt(d["cpu_max"], 1), fmt(d["rss"], 1)])
    spread_table.append([name, d["page"], f"{d['n']}/{d['total']}", spread(d, "rps", 0), spread(d, "p50", 3), spread(d, "p99", 3),
                         spread(d, "cpu_fix", 1), spread(d, "cpu_max", 1), spread(d, "rss", 1)])
if repeat > 1:
    rounds_line = (f"REPEAT={repeat}: targets ran round-robin in each of {repeat} rounds; every figure below is the median "
                   f"over the rounds, and the ratios are computed from those medians.")
else:
    rounds_line = "REPEAT=1: a single round; figures are from that one run (no median, no spread)."
md = [f"Machine: {os.environ['BENCH_CPU']}, {os.environ['BENCH_NPROC']} cores, Linux {os.environ['BENCH_KERNEL']}  ",
      f"Date: {os.environ['BENCH_DATE']}  ",
      f"Versions: {os.environ['BENCH_VERSIONS']}  ",
      f"Settings: {os.environ['BENCH_SETTINGS']}",
      "", rounds_line, ""] + render(header, table)
md += ["", "CPU µs/req is utime+stime of the whole server process tree (/proc/PID/stat) over the run divided by completed "
           "requests; for \"origin (direct)\" it is the origin nginx itself. Ratios are to nginx on the same page "
           "(lower is better except req/s). p50/p99 are measured at the fixed rate from the intended send time."]
if repeat > 1 and spread_table:
    md += ["", f"Spread over the rounds: median [min–max]; \"rounds\" counts the rounds that produced figures.", ""]
    md += render(["target", "page", "rounds", "req/s (max)", "p50 ms", "p99 ms", "CPU µs/req (fixed rate)",
                  "CPU µs/req (max load)", "RSS MiB"], spread_table)
if notes:
    md += ["", "Notes:"] + [f"- {n}" for n in notes]
text = "\n".join(md) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
if grep -q $'^concierge\t.*\tbinary missing' "$RESULTS"; then echo "concierge: binary missing ($CONCIERGE_BIN)"; fi
say "wrote $OUT_MD (raw outputs in $RAW_DIR)"

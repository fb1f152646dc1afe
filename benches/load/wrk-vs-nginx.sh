#!/usr/bin/env bash
# Interleaved wrk runs against atomserve and nginx serving the same file on loopback.
#
#   benches/load/wrk-vs-nginx.sh [path]        (default path: /index.html)
#
# Environment: ROOT (default frontend/dist), ROUNDS (3), DURATION (10s), CONNS (64),
# WORKERS (1: one worker / worker_process each), SERVER_CPU (1), CLIENT_CPU (0).
# Servers are pinned to SERVER_CPU and wrk to CLIENT_CPU so they do not compete for a core.
# Rounds alternate A B A B… after a warm-up; the medians and the per-round ratio are printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

PATH_UNDER_TEST=${1:-/index.html}
ROOT=$(realpath "${ROOT:-frontend/dist}")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
A_PORT=18181
N_PORT=18182

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
[ -x target/release/atomserve ] || cargo build --release --bin atomserve

tmp=$(mktemp -d)
cleanup() {
  [ -n "${apid:-}" ] && kill "$apid" 2>/dev/null || true
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/nginx.conf" <<CONF
worker_processes $WORKERS;
user root;
pid $tmp/nginx.pid;
error_log $tmp/error.log warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$N_PORT;
    root $ROOT;
  }
}
CONF

taskset -c "$SERVER_CPU" nginx -c "$tmp/nginx.conf" -e "$tmp/error.log"
taskset -c "$SERVER_CPU" target/release/atomserve --root "$ROOT" --listen "127.0.0.1:$A_PORT" \
  --admin-listen none --workers "$WORKERS" 2>"$tmp/atomserve.log" &
apid=$!
sleep 0.5

run() { # port → req/s
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$PATH_UNDER_TEST" |
    awk '/Requests\/sec/ {print $2} /Non-2xx|Socket errors/ {print "ERR: " $0 > "/dev/stderr"}'
}

echo "warm-up"; DURATION=2s run $A_PORT >/dev/null; DURATION=2s run $N_PORT >/dev/null
declare -a A N R
for i in $(seq 1 "$ROUNDS"); do
  a=$(run $A_PORT); n=$(run $N_PORT)
  A+=("$a"); N+=("$n"); R+=("$(awk -v a="$a" -v n="$n" 'BEGIN {printf "%.3f", a / n}')")
  printf 'round %d: atomserve %s req/s, nginx %s req/s, ratio %s\n' "$i" "$a" "$n" "${R[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
echo "median: atomserve $(median "${A[@]}") req/s, nginx $(median "${N[@]}") req/s, ratio $(median "${R[@]}")"
echo "(wrk -t1 -c$CONNS -d$DURATION $PATH_UNDER_TEST; $WORKERS worker(s) on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; $(date -u +%F))"

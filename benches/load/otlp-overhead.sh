#!/usr/bin/env bash
# What OTLP export costs the serving path: interleaved wrk runs against two atomserve processes
# on the same core, one with telemetry off, one exporting OTLP metrics every second to a real
# receiver (benches/load/otlp_sink.py). With TRACES=1 a third process also sends a span and a log
# record per request (OTEL_TRACES_SAMPLER=always_on), for comparison.
#
#   benches/load/otlp-overhead.sh [path]        (default path: /index.html)
#
# Environment: ROOT (frontend/dist), ROUNDS (5), DURATION (10s), CONNS (64), SERVER_CPU (1),
# CLIENT_CPU (0), TRACES (0).
set -euo pipefail
cd "$(dirname "$0")/../.."

PATH_UNDER_TEST=${1:-/index.html}
ROOT=$(realpath "${ROOT:-frontend/dist}")
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
TRACES=${TRACES:-0}
OFF_PORT=18191 ON_PORT=18192 ALL_PORT=18193 SINK_PORT=18194

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -x target/release/atomserve ] || cargo build --release --bin atomserve
[ -x .tools/venv/bin/python ] || make deps-test

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  cat "$tmp"/sink.log 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

taskset -c "$CLIENT_CPU" .tools/venv/bin/python benches/load/otlp_sink.py $SINK_PORT 2>"$tmp/sink.log" &
pids+=($!)
start() { # port, env... → starts atomserve on SERVER_CPU with the given environment
  local port=$1; shift
  env "$@" taskset -c "$SERVER_CPU" target/release/atomserve --root "$ROOT" --listen "127.0.0.1:$port" \
    --admin-listen none --workers 1 2>"$tmp/$port.log" &
  pids+=($!)
}
otlp=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_METRIC_EXPORT_INTERVAL=1000)
start $OFF_PORT X=1
start $ON_PORT "${otlp[@]}" OTEL_LOGS_EXPORTER=none
[ "$TRACES" = 1 ] && start $ALL_PORT "${otlp[@]}" OTEL_TRACES_SAMPLER=always_on
sleep 1
grep -h "OpenTelemetry" "$tmp"/*.log || true

run() { # port → req/s
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$PATH_UNDER_TEST" |
    awk '/Requests\/sec/ {print $2} /Non-2xx|Socket errors/ {print "ERR: " $0 > "/dev/stderr"}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f", a / b}'; }

echo "warm-up"; for p in $OFF_PORT $ON_PORT; do DURATION=2s run $p >/dev/null; done
declare -a OFF ON ALL R RA
for i in $(seq 1 "$ROUNDS"); do
  off=$(run $OFF_PORT); on=$(run $ON_PORT)
  OFF+=("$off"); ON+=("$on"); R+=("$(ratio "$on" "$off")")
  line="round $i: off $off req/s, metrics-export $on req/s, ratio ${R[-1]}"
  if [ "$TRACES" = 1 ]; then
    all=$(run $ALL_PORT); ALL+=("$all"); RA+=("$(ratio "$all" "$off")")
    line="$line; spans+logs $all req/s, ratio ${RA[-1]}"
  fi
  echo "$line"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
echo "median: off $(median "${OFF[@]}"), metrics-export $(median "${ON[@]}") req/s, ratio $(median "${R[@]}")"
[ "$TRACES" = 1 ] && echo "median: spans+logs $(median "${ALL[@]}") req/s, ratio $(median "${RA[@]}")"
echo "(wrk -t1 -c$CONNS -d$DURATION $PATH_UNDER_TEST; 1 worker on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; $(date -u +%F))"

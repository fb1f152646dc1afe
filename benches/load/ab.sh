#!/usr/bin/env bash
# Interleaved wrk rounds against two atomserve binaries (A B A B …) serving the same root:
# measures what a change costs or gains, on this noisy machine, as a median of per-round ratios.
#
#   benches/load/ab.sh BIN_A BIN_B [path]       (default path /index.html)
#
# Environment: ROOT (frontend/dist), ROUNDS (5), DURATION (10s), CONNS (64), SERVER_CPU (1),
# CLIENT_CPU (0). One worker each, pinned to SERVER_CPU; wrk pinned to CLIENT_CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
A=$1 B=$2 PATH_UNDER_TEST=${3:-/index.html}
ROOT=$(realpath "${ROOT:-frontend/dist}")
ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10s} CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

start() { # binary port
  taskset -c "$SERVER_CPU" "$1" --root "$ROOT" --listen "127.0.0.1:$2" --admin-listen none --workers 1 >/dev/null 2>&1 &
  echo $!
}
pa=$(start "$A" 18183); pb=$(start "$B" 18184)
trap 'kill $pa $pb 2>/dev/null || true' EXIT
sleep 0.5
run() { taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$PATH_UNDER_TEST" | awk '/Requests\/sec/ {print $2}'; }
DURATION=2s run 18183 >/dev/null; DURATION=2s run 18184 >/dev/null
ratios=()
for i in $(seq 1 "$ROUNDS"); do
  a=$(run 18183); b=$(run 18184)
  ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')")
  printf 'round %d: A %s req/s, B %s req/s, B/A %s\n' "$i" "$a" "$b" "${ratios[-1]}"
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR]=$1} END {print "median B/A: " ((NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2)}'

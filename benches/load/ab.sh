#!/usr/bin/env bash
# Interleaved wrk rounds against two atomserve binaries (A B B A A B …) serving the same root:
# measures what a change costs or gains, on this noisy machine, as a median of per-round ratios
# of req/s and of server CPU per request (user + system time of the server process from
# /proc/PID/stat across the round, ÷ requests: what the change costs even where wrk, not the
# server, sets the rate).
#
#   benches/load/ab.sh BIN_A BIN_B [path]       (default path /index.html)
#
# Environment: ROOT (frontend/dist), ROUNDS (5), DURATION (10s), CONNS (64), SERVER_CPU (1),
# CLIENT_CPU (0), WRK_ARGS (extra wrk arguments, e.g. "-s benches/load/pipeline.lua" or
# "-H 'Accept-Encoding: gzip, deflate, br, zstd'"). One worker each, pinned to SERVER_CPU; wrk
# pinned to CLIENT_CPU.
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
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
run() { # port pid → "req/s µs-per-request"
  local before after out
  before=$(ticks "$2")
  out=$(eval taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "${WRK_ARGS:-}" "http://127.0.0.1:$1$PATH_UNDER_TEST")
  after=$(ticks "$2")
  awk -v t=$((after - before)) -v hz="$hz" '/ requests in /{n=$1} /Requests\/sec/{r=$2} END {printf "%s %.3f", r, t / hz * 1e6 / n}' <<<"$out"
}
DURATION=2s run 18183 "$pa" >/dev/null; DURATION=2s run 18184 "$pb" >/dev/null
rates=() cpus=()
for i in $(seq 1 "$ROUNDS"); do
  # A B, then B A: an order effect (a warmer cache, a neighbour's burst) cancels out.
  if ((i % 2)); then
    read -r ra ca <<<"$(run 18183 "$pa")"; read -r rb cb <<<"$(run 18184 "$pb")"
  else
    read -r rb cb <<<"$(run 18184 "$pb")"; read -r ra ca <<<"$(run 18183 "$pa")"
  fi
  rates+=("$(awk -v a="$ra" -v b="$rb" 'BEGIN {printf "%.3f", b / a}')")
  cpus+=("$(awk -v a="$ca" -v b="$cb" 'BEGIN {printf "%.3f", b / a}')")
  printf 'round %d: A %s req/s %s us/req, B %s req/s %s us/req; B/A req/s %s, CPU/req %s\n' \
    "$i" "$ra" "$ca" "$rb" "$cb" "${rates[-1]}" "${cpus[-1]}"
done
median() { sort -g | awk '{v[NR]=$1} END {print ((NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2)}'; }
echo "median B/A: req/s $(printf '%s\n' "${rates[@]}" | median), CPU per request $(printf '%s\n' "${cpus[@]}" | median)"

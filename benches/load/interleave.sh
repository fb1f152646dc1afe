#!/usr/bin/env bash
# Interleaved A/B(/C…) rounds of wrk against servers started here: the quick before/after
# measurement behind the optimisation figures in docs/benchmarks.md (peers.sh is the full harness).
#
#   benches/load/interleave.sh URL_PATH 'name=command with PORT' 'name=command with PORT' …
#
# Each command is started pinned to SERVER_CPU (1) with PORT replaced by a free port; a word
# `@FILE` is replaced by a copy of FILE with PORT and PIDFILE filled in (a peer's configuration,
# e.g. `nginx=nginx -c @nginx.conf.in`, made from the one peers.sh writes). Then a warm-up
# round and ROUNDS (3) rounds, each server in turn, of `wrk -t1 -cCONNS (64) -dDURATION (5s)`
# pinned to CLIENT_CPU (0), with `-s $LUA` and `-H "$HEADER"` when set. Per run it prints req/s,
# the server's CPU µs per request (utime+stime of its process and children from /proc) and wrk's
# own CPU µs per request (when wrk's core is saturated, req/s measures wrk as much as the server),
# wrk's 99th percentile latency (per pipelined batch with LUA=pipeline.lua), and the busy time
# of both CPUs per request (user, system, irq and softirq from /proc/stat, whoever ran): on
# loopback the receive side's TCP work lands on whichever process is running, so this sum moves
# less from round to round than either process's share. Last, the tail: wrk's 99.9th percentile
# and largest latency (`latency.lua`).
#
# RUNS=N (1) does all of that N times, each time with the servers started afresh, and prefixes
# each line with `run K`: a process keeps its memory layout for its whole life, and on this
# machine the same pair of builds has differed by more between runs than within one
# (docs/benchmarks.md). `ratios.py` then resamples whole runs for its interval.
set -euo pipefail
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5s} CONNS=${CONNS:-64} RUNS=${RUNS:-1}
SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0} PORT_BASE=${PORT_BASE:-28100}
path=$1; shift
tmp=$(mktemp -d)
declare -A PORT PID
names=()
stop() {
  for n in "${names[@]}"; do
    [ -n "${PID[$n]:-}" ] && { kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; }
    PID[$n]=
  done
}
cleanup() { stop; rm -rf "$tmp"; }
trap cleanup EXIT
start() { # every server, afresh (a run's ports are its own: no wait for the last run's to close)
  local port=$((PORT_BASE + ($1 - 1) * ${#specs[@]}))
  for spec in "${specs[@]}"; do
    name=${spec%%=*} cmd=${spec#*=}
    port=$((port + 1)) PORT[$name]=$port
    words=()
    for w in ${cmd//PORT/$port}; do
      if [[ $w == @* ]]; then
        sed "s/PORT/$port/g; s#PIDFILE#$tmp/$name.pid#g" "${w#@}" >"$tmp/$name.conf"
        w=$tmp/$name.conf
      fi
      words+=("$w")
    done
    taskset -c "$SERVER_CPU" "${words[@]}" >"$tmp/$name.log" 2>&1 &
    PID[$name]=$!
  done
  for n in "${names[@]}"; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:${PORT[$n]}$path" && break; sleep 0.1; done
  done
}
specs=("$@")
for spec in "${specs[@]}"; do names+=("${spec%%=*}"); done
# shellcheck source=benches/load/proctree.sh
. "$(dirname "$0")/proctree.sh" # ticks: CPU of a process tree
hz=$(getconf CLK_TCK)
busy() { # busy ticks of SERVER_CPU and CLIENT_CPU together
  awk -v a="cpu$SERVER_CPU" -v b="cpu$CLIENT_CPU" '$1 == a || $1 == b { t += $2 + $3 + $4 + $7 + $8 } END { print t }' /proc/stat
}
# wrk takes one script: LUA's (if any), then latency.lua's `done`, which prints the tail.
{ [ -n "${LUA:-}" ] && { cat "$LUA"; echo; }; cat "$(dirname "$0")/latency.lua"; } >"$tmp/wrk.lua"
extra=(-s "$tmp/wrk.lua")
[ -n "${HEADER:-}" ] && extra+=(-H "$HEADER")
for run in $(seq 1 "$RUNS"); do
  start "$run"
  prefix=$( ((RUNS > 1)) && echo "run $run  " || true)
  for r in $(seq 0 "$ROUNDS"); do
    for n in "${names[@]}"; do
      t0=$(ticks "${PID[$n]}") b0=$(busy)
      out=$(taskset -c "$CLIENT_CPU" /usr/bin/time -f "WRKCPU %U %S" wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
        "${extra[@]}" "http://127.0.0.1:${PORT[$n]}$path" 2>&1)
      t1=$(ticks "${PID[$n]}") b1=$(busy)
      ((r == 0)) && continue
      awk -v p="$prefix" -v r="$r" -v n="$n" -v dt=$((t1 - t0)) -v db=$((b1 - b0)) -v hz="$hz" '
        function ms(v) { return v ~ /us$/ ? v / 1000 : v ~ /ms$/ ? v + 0 : v * 1000 }
        / requests in / { reqs = $1 } /^Requests\/sec/ { rps = $2 } /^WRKCPU/ { w = $2 + $3 }
        $1 == "99%" { p99 = ms($2) } $1 == "TAIL" { p999 = $2 / 1000; top = $3 / 1000 }
        END { printf "%sround %d  %-10s %10.0f req/s  server %8.3f µs/req  wrk %8.3f µs/req  p99 %7.3f ms  cpus %8.3f µs/req  p99.9 %7.3f ms  max %8.3f ms\n",
                     p, r, n, rps, dt * 1e6 / hz / reqs, w * 1e6 / reqs, p99, db * 1e6 / hz / reqs, p999, top }' <<<"$out"
    done
  done
  stop
done

#!/usr/bin/env bash
# User-space instructions per request under callgrind (perf has no counters in many VMs):
#
#   benches/load/callgrind.sh BINARY ROOT OUT [wrk arguments…]     e.g. -c16 -d8s -s pipeline.lua
#
# Starts BINARY (one worker) on ROOT under valgrind with instrumentation off, waits until it
# serves and its background compression is done ("variants complete" in its log; up to 10 min
# under valgrind), switches instrumentation on (so the load's work is left out), runs wrk
# against /index.html, switches it off, and prints instructions ÷ wrk's request count. OUT is
# the callgrind file for `callgrind_annotate [--inclusive=yes] OUT`.
#
# The epoll backend only: under valgrind 3.19 (Debian 12) the io_uring backend answered no
# request in a minute (its accepted connections stayed unread), so `ATOMSERVE_IO=uring` or
# `auto` is refused here rather than left to hang. Profile the ring with
# `perf record -e cpu-clock` (docs/benchmarks.md).
set -euo pipefail
bin=$1 root=$2 out=$3; shift 3
case ${ATOMSERVE_IO:-epoll} in
  epoll) ;;
  *) echo "callgrind.sh: ATOMSERVE_IO=$ATOMSERVE_IO: valgrind cannot run the io_uring backend; use epoll" >&2; exit 2 ;;
esac
port=${PORT:-28001}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$bin" --root "$root" \
  --listen "127.0.0.1:$port" --admin-listen none --workers 1 >"$out.log" 2>&1 &
vg=$!
serving=false
for _ in $(seq 120); do
  curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/index.html" && { serving=true; break; }
  sleep 0.5
done
$serving || { echo "callgrind.sh: $bin did not serve within a minute under valgrind; its log: $out.log" >&2; kill -9 "$vg"; exit 1; }
for _ in $(seq 1200); do grep -q "variants complete" "$out.log" && break; sleep 0.5; done
callgrind_control -i on "$vg" >/dev/null
result=$(wrk -t1 "$@" "http://127.0.0.1:$port/index.html")
callgrind_control -i off "$vg" >/dev/null
kill -INT "$vg"
wait "$vg" || true
requests=$(awk '/ requests in /{print $1}' <<<"$result")
instructions=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
echo "$requests requests, $instructions instructions: $((instructions / requests)) per request"

#!/usr/bin/env bash
# Heap allocations of a running atomserve around a batch of keep-alive requests, counted by
# benches/load/malloc_count.c (LD_PRELOAD) — the figure docs/rust.md quotes.
#
#   benches/load/malloc_count.sh [BIN] [REQUESTS] [CONNECTIONS]
#     BIN          default target/release/atomserve (any server taking --root/--listen)
#     REQUESTS     per connection, default 2000; CONNECTIONS default 8, opened after the first count
#
# Prints the counts before and after, and the difference per request and per connection.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/atomserve}
REQUESTS=${2:-2000}
CONNS=${3:-8}
PORT=${PORT:-18191}
ROOT=${ROOT:-frontend/dist}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT

gcc -O2 -shared -fPIC -o "$work/malloc_count.so" benches/load/malloc_count.c
MALLOC_COUNT_FILE="$work/counts" LD_PRELOAD="$work/malloc_count.so" \
  "$BIN" --root "$ROOT" --listen "127.0.0.1:$PORT" --admin-listen none --workers 1 2>"$work/log" &
pid=$!
until curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do sleep 0.1; done
# Let start-up's background work (the compression threads) finish before counting.
for _ in $(seq 300); do grep -q "variants complete" "$work/log" && break; sleep 0.1; done

counts() { od -An -t u8 -w8 -N 48 "$work/counts" | tr -s ' \n' ' '; }
before=$(counts)
urls=$(for _ in $(seq "$REQUESTS"); do printf 'http://127.0.0.1:%s/index.html -o /dev/null ' "$PORT"; done)
for _ in $(seq "$CONNS"); do
  # One curl = one keep-alive connection carrying REQUESTS requests.
  # shellcheck disable=SC2086
  curl -s $urls &
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
after=$(counts)
python3 - "$before" "$after" "$REQUESTS" "$CONNS" <<'PY'
import sys
names = ["malloc", "calloc", "realloc", "aligned", "free", "bytes"]
b, a = ([int(x) for x in s.split()] for s in sys.argv[1:3])
requests, conns = int(sys.argv[3]) * int(sys.argv[4]), int(sys.argv[4])
d = [y - x for x, y in zip(b, a)]
allocs = sum(d[:4])
print("before:", dict(zip(names, b)))
print("after: ", dict(zip(names, a)))
print(f"requests {requests} on {conns} connections: {allocs} allocations "
      f"({allocs / requests:.4f} per request, {allocs / conns:.1f} per connection), {d[4]} frees")
PY

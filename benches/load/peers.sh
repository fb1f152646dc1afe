#!/usr/bin/env bash
# atomserve against nginx, lighttpd and h2o, and against the syscall floor (floor.c), on loopback.
# `make bench-load` runs it; the performance issue (#8) sets the targets it is read against.
#
#   benches/load/peers.sh
#
# What it does:
#   1. Installs what is missing from Debian: wrk, nginx-light, lighttpd (+ mod_deflate), h2o, gcc,
#      strace, python3, and linux-perf when the archive has it.
#   2. Generates a Vite-shaped root (vite_root.py: 460 B index.html, 190 KiB JS and 1.4 KiB CSS
#      under assets/ with hashed names, 1.5 KiB SVG, 5 MiB media file), or serves $ROOT.
#   3. Starts, each pinned to SERVER_CPU with one worker: atomserve (--workers 1) on epoll and as
#      `atomserve-uring` on io_uring (--io uring); nginx, lighttpd
#      and h2o tuned for static files (sendfile, tcp_nopush, open_file_cache, no access log,
#      unlimited keep-alive), plus a second instance of each in its usual compressing setup for
#      the browser-Accept-Encoding case (nginx `gzip on`, lighttpd mod_deflate with a cache dir,
#      h2o `compress: ON`); and the floor (gcc -O2), answering with the exact bytes atomserve
#      sends: index.html (copying send), the JS (copying send; sendfile from a memfd; and
#      `split`, the head with send + MSG_MORE then the body with sendfile, which is what a server
#      whose head carries a per-response Date must do at the least), and for the browser case
#      atomserve's brotli response of the JS to a browser's Accept-Encoding sent whole, with one
#      sendfile from a memfd (`floor-br`) or one copying send (`floor-br-copy`); and
#      floor_uring.c (gcc -O2
#      -luring), the io_uring floor for the index cases: multishot accept and receive into a
#      provided-buffer ring, one send per receive completion, one submit-and-wait per loop turn.
#   4. Per case: a warm-up of every server, then ROUNDS interleaved rounds (A B C D …, A B C D …)
#      of `wrk -t1 --latency` pinned to CLIENT_CPU, recording req/s, p99, errors (non-2xx and
#      socket errors) and server CPU µs per request (utime+stime of the server's process tree
#      from /proc before and after, over wrk's request count).
#   5. Syscalls per request: `strace -c -f -p` over a fixed number of keep-alive requests
#      (loadclient.py, 8 connections), plain and pipelined ×16; instructions per request with
#      `perf stat -e instructions` where the CPU exposes the counter.
#   6. RSS per idle keep-alive connection: a fresh instance's RSS (process tree) before and after
#      C10K idle connections that each made one request.
#   7. Prints the tables (summarize.py: medians, and atomserve's ratios taken round by round;
#      atomserve-uring's against atomserve on epoll and against floor-uring).
#
# Environment: ROUNDS (3), DURATION (5s per wrk run), WARMUP (1s), CASES (default all of:
# index-c64 index-c1000 index-pipe16 js-c64 js-br-c64 big-c16 c10k; empty: none), C10K (10000),
# SYSCALL_REQUESTS (20000), STRACE (1; 0 skips the syscall counts), SERVER_CPU (1), CLIENT_CPU
# (0), ROOT (a directory to serve instead of the generated one: the largest .js under it is the
# JS case, its largest file over 1 MiB the big case), ATOMSERVE (target/release/atomserve),
# PORT_BASE (18400), OUT (target/bench-load/<UTC time>: raw wrk/strace output, configurations,
# logs, results.tsv, summary.md), SHMEM_THP (advise: for the run, /sys/kernel/mm/
# transparent_hugepage/shmem_enabled is set to this, when writable, and restored on exit, so that
# atomserve's memfd bodies can have huge pages as docs/deploy.md recommends; the peers serve from
# the page cache of the root's file system and do not use shmem; `keep` leaves the setting alone).
# Defaults take about 10 minutes; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=benches/load

ROUNDS=${ROUNDS:-3}
SHMEM_THP=${SHMEM_THP:-advise}
THP_KNOB=/sys/kernel/mm/transparent_hugepage/shmem_enabled
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CASES=${CASES-index-c64 index-c1000 index-pipe16 js-c64 js-br-c64 big-c16 c10k}
C10K=${C10K:-10000}
SYSCALL_REQUESTS=${SYSCALL_REQUESTS:-20000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
ATOMSERVE=${ATOMSERVE:-target/release/atomserve}
PORT_BASE=${PORT_BASE:-18400}
OUT=${OUT:-target/bench-load/$(date -u +%Y%m%dT%H%M%SZ)}
BROWSER_AE='gzip, deflate, br, zstd'
started=$(date +%s)

# --- 1. tools ----------------------------------------------------------------------------------
missing=()
for tool in wrk:wrk nginx:nginx-light lighttpd:lighttpd h2o:h2o gcc:gcc strace:strace python3:python3 curl:curl; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
[ -e /usr/include/liburing.h ] || missing+=(liburing-dev)
[ -e /usr/lib/lighttpd/mod_deflate.so ] || missing+=(lighttpd-mod-deflate)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v perf >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  linux-perf >/dev/null 2>&1 || echo "linux-perf not installable: no instruction counts"; }
[ -x "$ATOMSERVE" ] || nice cargo build --release --bin atomserve

ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < C10K + 1000)); then
  C10K=$(($(ulimit -n) - 1000))
  echo "open-file limit $(ulimit -n): the many-connections case uses $C10K"
fi

mkdir -p "$OUT/wrk" "$OUT/strace"
OUT=$(realpath "$OUT")
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
thp_before=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$tmp"
  [ -z "$thp_before" ] || echo "$thp_before" >"$THP_KNOB" 2>/dev/null || true
}
trap cleanup EXIT
if [ "$SHMEM_THP" != keep ] && [ -w "$THP_KNOB" ]; then
  thp_before=$(sed 's/.*\[\(.*\)\].*/\1/' "$THP_KNOB")
  echo "$SHMEM_THP" >"$THP_KNOB" || thp_before=
fi

# --- 2. document root --------------------------------------------------------------------------
if [ -n "${ROOT:-}" ]; then
  ROOT=$(realpath "$ROOT")
  JS=/$(cd "$ROOT" && find . -name '*.js' -printf '%s %P\n' | sort -n | tail -1 | cut -d' ' -f2)
  BIG=$(cd "$ROOT" && find . -type f -size +1M -printf '%s %P\n' | sort -n | tail -1 | cut -d' ' -f2)
  BIG=${BIG:+/$BIG}
else
  ROOT=$tmp/root
  paths=$(python3 "$HERE/vite_root.py" "$ROOT")
  JS=$(tr ' ' '\n' <<<"$paths" | sed -n 's/^js=//p')
  BIG=$(tr ' ' '\n' <<<"$paths" | sed -n 's/^big=//p')
fi
INDEX=/index.html
echo "root $ROOT: $INDEX, JS $JS, big ${BIG:-none}"

# --- 3. servers --------------------------------------------------------------------------------
declare -A PORT PID
port_of() { echo $((PORT_BASE + $1)); }
PORT[atomserve]=$(port_of 1)
PORT[nginx]=$(port_of 2) PORT[nginx-gzip]=$(port_of 3)
PORT[lighttpd]=$(port_of 4) PORT[lighttpd-deflate]=$(port_of 5)
PORT[h2o]=$(port_of 6) PORT[h2o-compress]=$(port_of 7)
PORT[floor]=$(port_of 8) PORT[floor-copy]=$(port_of 9) PORT[floor-zerocopy]=$(port_of 10)
PORT[floor-split]=$(port_of 15)
PORT[atomserve-uring]=$(port_of 16) PORT[floor-uring]=$(port_of 17) PORT[floor-br]=$(port_of 19) PORT[floor-br-copy]=$(port_of 20)

nginx_conf() { # name port extra-http-directives
  cat <<CONF
worker_processes 1;
daemon off;
user root;
pid $tmp/$1.pid;
error_log $tmp/$1.error.log warn;
worker_rlimit_nofile 40000;
events { worker_connections 16384; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  open_file_cache max=1000 inactive=60s;
  open_file_cache_valid 60s;
  open_file_cache_errors on;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  $3
  server { listen 127.0.0.1:$2 backlog=4096; root $ROOT; }
}
CONF
}

lighttpd_conf() { # name port extra
  cat <<CONF
server.document-root = "$ROOT"
server.bind = "127.0.0.1"
server.port = $2
server.errorlog = "$tmp/$1.error.log"
server.max-worker = 0
server.max-fds = 40000
server.max-connections = 16384
server.listen-backlog = 4096
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle = 60
server.network-backend = "sendfile"
server.stat-cache-engine = "simple"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html; charset=utf-8", ".js" => "text/javascript; charset=utf-8",
  ".css" => "text/css; charset=utf-8", ".svg" => "image/svg+xml", ".mp4" => "video/mp4" )
$3
CONF
}

h2o_conf() { # name port extra
  cat <<CONF
user: root
num-threads: 1
max-connections: 16384
pid-file: $tmp/$1.pid
error-log: $tmp/$1.error.log
http1-request-timeout: 60
listen:
  host: 127.0.0.1
  port: $2
$3
hosts:
  default:
    paths:
      /:
        file.dir: $ROOT
CONF
}

spawn() { # name command…  (pinned to SERVER_CPU, stdout/stderr to a log)
  local name=$1; shift
  taskset -c "$SERVER_CPU" "$@" >"$tmp/$name.log" 2>&1 &
  PID[$name]=$!
  pids+=($!)
}

wait_port() { # name
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:${PORT[$1]}$INDEX" && return 0
    sleep 0.1
  done
  echo "$1 did not start:"; cat "$tmp/$1.log" "$tmp/$1.error.log" 2>/dev/null; exit 1
}

spawn atomserve "$ATOMSERVE" --root "$ROOT" --listen "127.0.0.1:${PORT[atomserve]}" --admin-listen none --workers 1
spawn atomserve-uring "$ATOMSERVE" --root "$ROOT" --listen "127.0.0.1:${PORT[atomserve-uring]}" --admin-listen none \
  --workers 1 --io uring
nginx_conf nginx "${PORT[nginx]}" "" >"$tmp/nginx.conf"
nginx_conf nginx-gzip "${PORT[nginx-gzip]}" \
  "gzip on; gzip_types text/css application/javascript text/javascript image/svg+xml;" >"$tmp/nginx-gzip.conf"
for n in nginx nginx-gzip; do spawn $n nginx -c "$tmp/$n.conf" -e "$tmp/$n.error.log"; done
mkdir -p "$tmp/deflate-cache"
lighttpd_conf lighttpd "${PORT[lighttpd]}" "" >"$tmp/lighttpd.conf"
lighttpd_conf lighttpd-deflate "${PORT[lighttpd-deflate]}" "server.modules += ( \"mod_deflate\" )
deflate.mimetypes = ( \"text/html\", \"text/css\", \"text/javascript\", \"image/svg+xml\" )
deflate.allowed-encodings = ( \"brotli\", \"gzip\", \"deflate\" )
deflate.cache-dir = \"$tmp/deflate-cache\"" >"$tmp/lighttpd-deflate.conf"
for n in lighttpd lighttpd-deflate; do spawn $n lighttpd -D -f "$tmp/$n.conf"; done
h2o_conf h2o "${PORT[h2o]}" "" >"$tmp/h2o.conf"
h2o_conf h2o-compress "${PORT[h2o-compress]}" "compress: ON" >"$tmp/h2o-compress.conf"
for n in h2o h2o-compress; do spawn $n h2o -c "$tmp/$n.conf"; done
for n in atomserve atomserve-uring nginx nginx-gzip lighttpd lighttpd-deflate h2o h2o-compress; do wait_port $n; done

# The floor answers with atomserve's own bytes: fetched once, as wrk asks (no Accept-Encoding).
gcc -O2 -Wall -o "$tmp/floor" "$HERE/floor.c"
gcc -O2 -Wall -o "$tmp/floor-uring" "$HERE/floor_uring.c" -luring
curl -s -i --raw -o "$tmp/index.resp" "http://127.0.0.1:${PORT[atomserve]}$INDEX"
curl -s -i --raw -o "$tmp/js.resp" "http://127.0.0.1:${PORT[atomserve]}$JS"
# The browser case's floor: atomserve's brotli response to the browser's Accept-Encoding (the
# body stays compressed: no --compressed), sent whole with one send per request.
# (Its brotli variant is built in the background after start: wait for it, up to 2 minutes.)
for _ in $(seq 240); do
  curl -s -i --raw -H "Accept-Encoding: $BROWSER_AE" -o "$tmp/js-br.resp" "http://127.0.0.1:${PORT[atomserve]}$JS"
  grep -qi '^content-encoding: br' "$tmp/js-br.resp" && break
  sleep 0.5
done
grep -qi '^content-encoding: br' "$tmp/js-br.resp" || { echo "no brotli response for $JS after 2 minutes" >&2; exit 1; }
spawn floor "$tmp/floor" "${PORT[floor]}" "$tmp/index.resp" copy
spawn floor-copy "$tmp/floor" "${PORT[floor-copy]}" "$tmp/js.resp" copy
spawn floor-zerocopy "$tmp/floor" "${PORT[floor-zerocopy]}" "$tmp/js.resp" sendfile
spawn floor-split "$tmp/floor" "${PORT[floor-split]}" "$tmp/js.resp" split
spawn floor-uring "$tmp/floor-uring" "${PORT[floor-uring]}" "$tmp/index.resp"
spawn floor-br "$tmp/floor" "${PORT[floor-br]}" "$tmp/js-br.resp" sendfile
spawn floor-br-copy "$tmp/floor" "${PORT[floor-br-copy]}" "$tmp/js-br.resp" copy
for n in floor floor-copy floor-zerocopy floor-split floor-uring floor-br floor-br-copy; do wait_port $n; done

{
  echo "atomserve: $("$ATOMSERVE" --version) ($ATOMSERVE, built $(date -u -r "$ATOMSERVE" '+%F %T') UTC;" \
    "tree at $(git rev-parse --short HEAD 2>/dev/null)$(git status --porcelain -- src 2>/dev/null | awk '{f = f " " $2} END {if (f) printf ", uncommitted:%s", f}'))"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*\///'); lighttpd: $(lighttpd -v | sed 's/ .*//; s/.*\///'); h2o: $(h2o -v | sed -n '1s/.* //p')"
  echo "kernel $(uname -r), $(nproc) CPUs; servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; $(date -u '+%F %T') UTC"
  echo "ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP C10K=$C10K SYSCALL_REQUESTS=$SYSCALL_REQUESTS"
  echo "shmem huge pages ($THP_KNOB): $(cat "$THP_KNOB" 2>/dev/null || echo unknown)"
} | tee "$OUT/versions.txt"

# --- 4. cases ----------------------------------------------------------------------------------
# A case: path, connections, extra wrk arguments, then server=instance pairs (the name it is
# reported under = the instance that serves it).
case_spec() {
  case $1 in
    index-c64) echo "$INDEX|64||atomserve atomserve-uring nginx lighttpd h2o floor floor-uring" ;;
    index-c1000) echo "$INDEX|1000||atomserve atomserve-uring nginx lighttpd h2o floor floor-uring" ;;
    index-pipe16) echo "$INDEX|64|-s $HERE/pipeline.lua|atomserve atomserve-uring nginx lighttpd h2o floor floor-uring" ;;
    js-c64) echo "$JS|64||atomserve atomserve-uring nginx lighttpd h2o floor-copy floor-zerocopy floor-split" ;;
    js-br-c64) echo "$JS|64|-H Accept-Encoding:_${BROWSER_AE// /_}|atomserve atomserve-uring nginx=nginx-gzip lighttpd=lighttpd-deflate h2o=h2o-compress floor-br floor-br-copy" ;;
    big-c16) [ -n "$BIG" ] && echo "$BIG|16||atomserve atomserve-uring nginx lighttpd h2o" ;;
    c10k) echo "$INDEX|$C10K||atomserve atomserve-uring nginx lighttpd h2o" ;;
    *) echo "unknown case $1" >&2; exit 1 ;;
  esac
}

# shellcheck source=benches/load/proctree.sh
. "$HERE/proctree.sh" # tree, ticks, rss_kib
HZ=$(getconf CLK_TCK)

wrk_args() { # case → wrk arguments, one a line (a header's spaces travel as _ in the spec)
  local spec path conns extra a; spec=$(case_spec "$1")
  IFS='|' read -r path conns extra _ <<<"$spec"
  printf '%s\n' -t1 -c"$conns" --latency --timeout 10s
  for a in $extra; do printf '%s\n' "${a//_/ }"; done
}

run() { # case round name instance duration → one row in results.tsv (round 0: warm-up, dropped)
  local case=$1 round=$2 name=$3 inst=$4 duration=$5 path t0 t1 out
  path=$(case_spec "$case" | cut -d'|' -f1)
  mapfile -t args < <(wrk_args "$case")
  out=$OUT/wrk/$case.$name.$round.txt
  t0=$(ticks "${PID[$inst]}")
  taskset -c "$CLIENT_CPU" wrk "${args[@]}" -d"$duration" "http://127.0.0.1:${PORT[$inst]}$path" >"$out" 2>&1 || true
  t1=$(ticks "${PID[$inst]}")
  ((round == 0)) && return 0
  awk -v c="$case" -v r="$round" -v s="$name" -v dt=$((t1 - t0)) -v hz="$HZ" '
    / requests in / { reqs = $1 }
    /^Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u)
               p99 = v * (u == "us" ? 0.001 : u == "ms" ? 1 : u == "s" ? 1000 : 60000) }
    /Non-2xx/ { errs += $NF }
    /Socket errors/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
    END { cpu = reqs ? sprintf("%.3f", dt * 1e6 / hz / reqs) : "-"
          printf "%s\t%d\t%s\t%.0f\t%.3f\t%s\t%d\t%d\n", c, r, s, rps, p99, cpu, reqs, errs }
  ' "$out" | tee -a "$OUT/results.tsv" | awk -F'\t' '{printf "  %-14s %9s req/s  p99 %7s ms  %8s µs/req  errors %s\n", $3, $4, $5, $6, $8}'
}

# What each server sends for each case (status, Content-Encoding, bytes), once, before timing.
echo; echo "responses:"
for case in $CASES; do
  spec=$(case_spec "$case") || continue
  IFS='|' read -r path _ extra servers <<<"$spec"
  hdr=(); [[ $extra == *Accept-Encoding* ]] && hdr=(-H "Accept-Encoding: $BROWSER_AE")
  for pair in $servers; do
    inst=${pair#*=}
    head=$(curl -s -o /dev/null "${hdr[@]}" -D - -w 'STATUS %{http_code} %{size_download} B\n' \
      "http://127.0.0.1:${PORT[$inst]}$path" | tr -d '\r')
    enc=$(awk 'tolower($1) == "content-encoding:" {print $2}' <<<"$head")
    printf '  %-13s %-16s %s %s\n' "$case" "$inst" "$(sed -n 's/^STATUS //p' <<<"$head")" "${enc:-identity}"
  done
done | tee "$OUT/responses.txt"

for case in $CASES; do
  spec=$(case_spec "$case") || { echo "skipping $case (no file over 1 MiB in $ROOT)"; continue; }
  servers=$(cut -d'|' -f4 <<<"$spec")
  echo; echo "== $case: $(cut -d'|' -f1 <<<"$spec"), wrk $(wrk_args "$case" | tr '\n' ' ')"
  for pair in $servers; do run "$case" 0 "${pair%%=*}" "${pair#*=}" "$WARMUP"; done
  for round in $(seq 1 "$ROUNDS"); do
    echo " round $round"
    for pair in $servers; do run "$case" "$round" "${pair%%=*}" "${pair#*=}" "$DURATION"; done
  done
done

# --- 5. syscalls and instructions per request ---------------------------------------------------
worker_pid() { # name → the process that serves requests (nginx: its one worker)
  case $1 in
    nginx) ps -o pid= --ppid "${PID[nginx]}" | head -1 | tr -d ' ' ;;
    *) echo "${PID[$1]}" ;;
  esac
}
[ "${STRACE:-1}" = 1 ] && { echo; echo "== syscalls per request: strace -c -f over $SYSCALL_REQUESTS keep-alive GET $INDEX (8 connections)"
for depth in 1 16; do
  for s in atomserve atomserve-uring nginx lighttpd h2o floor floor-uring; do
    f=$OUT/strace/$s.depth$depth.txt
    strace -c -f -U name,calls -o "$f" -p "$(worker_pid $s)" 2>/dev/null &
    spid=$!
    sleep 1
    res=$(python3 "$HERE/loadclient.py" fixed "${PORT[$s]}" "$INDEX" "$SYSCALL_REQUESTS" 8 "$depth")
    kill -INT $spid; wait $spid || true
    n=$(sed -n 's/^requests=\([0-9]*\).*/\1/p' <<<"$res")
    awk -v s="$s" -v d="$depth" -v n="$n" -v res="$res" '
      $1 == "total" { total = $2 }
      $2 ~ /^[0-9]+$/ && $1 != "total" && $1 != "syscall" { c[$1] = $2 }
      END { line = sprintf("  %-9s depth %2d: %5.2f syscalls/request (%s):", s, d, total / n, res)
            for (k in c) if (c[k] / n >= 0.01) line = line sprintf(" %s %.2f", k, c[k] / n)
            print line }' "$f"
  done
done | tee "$OUT/syscalls.txt"; }

echo
if perf stat -e instructions -x, -o "$tmp/perf.probe" true 2>/dev/null && ! grep -q 'not supported' "$tmp/perf.probe"; then
  echo "== instructions per request: perf stat -e instructions over $SYSCALL_REQUESTS keep-alive GET $INDEX"
  for s in atomserve nginx lighttpd h2o floor; do
    perf stat -e instructions -x, -o "$tmp/perf.$s" -p "$(worker_pid $s)" &
    ppid=$!
    sleep 0.5
    res=$(python3 "$HERE/loadclient.py" fixed "${PORT[$s]}" "$INDEX" "$SYSCALL_REQUESTS" 8 1)
    kill -INT $ppid; wait $ppid || true
    n=$(sed -n 's/^requests=\([0-9]*\).*/\1/p' <<<"$res")
    awk -F, -v s="$s" -v n="$n" '$3 ~ /instructions/ {printf "  %-9s %8.0f instructions/request\n", s, $1 / n}' "$tmp/perf.$s"
  done
else
  echo "== instructions per request: perf stat cannot count instructions here ($(grep -o 'not supported' "$tmp/perf.probe" 2>/dev/null || echo 'perf failed'): no PMU exposed to this VM)"
fi | tee "$OUT/instructions.txt"

# --- 6. RSS per idle keep-alive connection ------------------------------------------------------
# On fresh instances: a server that already served the many-connections case keeps the memory it
# grew then, and would show no growth at all.
echo; echo "== RSS per idle keep-alive connection: fresh instances, $C10K connections, one GET $INDEX each, then idle"
PORT[atomserve-rss]=$(port_of 11) PORT[nginx-rss]=$(port_of 12) PORT[lighttpd-rss]=$(port_of 13) PORT[h2o-rss]=$(port_of 14)
PORT[atomserve-uring-rss]=$(port_of 18)
nginx_conf nginx-rss "${PORT[nginx-rss]}" "" >"$tmp/nginx-rss.conf"
lighttpd_conf lighttpd-rss "${PORT[lighttpd-rss]}" "" >"$tmp/lighttpd-rss.conf"
h2o_conf h2o-rss "${PORT[h2o-rss]}" "" >"$tmp/h2o-rss.conf"
for s in atomserve atomserve-uring nginx lighttpd h2o; do
  case $s in
    atomserve) spawn atomserve-rss "$ATOMSERVE" --root "$ROOT" --listen "127.0.0.1:${PORT[atomserve-rss]}" --admin-listen none --workers 1 ;;
    atomserve-uring) spawn atomserve-uring-rss "$ATOMSERVE" --root "$ROOT" --listen "127.0.0.1:${PORT[atomserve-uring-rss]}" \
      --admin-listen none --workers 1 --io uring ;;
    nginx) spawn nginx-rss nginx -c "$tmp/nginx-rss.conf" -e "$tmp/nginx-rss.error.log" ;;
    lighttpd) spawn lighttpd-rss lighttpd -D -f "$tmp/lighttpd-rss.conf" ;;
    h2o) spawn h2o-rss h2o -c "$tmp/h2o-rss.conf" ;;
  esac
  wait_port $s-rss
  sleep 0.5
  before=$(rss_kib "${PID[$s-rss]}")
  rm -f "$tmp/hold"; mkfifo "$tmp/hold"
  taskset -c "$CLIENT_CPU" python3 "$HERE/loadclient.py" idle "${PORT[$s-rss]}" "$INDEX" "$C10K" <"$tmp/hold" >"$tmp/idle.out" 2>&1 &
  cpid=$!
  exec 9>"$tmp/hold"
  for _ in $(seq 600); do grep -q ready "$tmp/idle.out" 2>/dev/null && break; kill -0 $cpid 2>/dev/null || break; sleep 0.1; done
  sleep 0.5
  after=$(rss_kib "${PID[$s-rss]}")
  exec 9>&-
  wait $cpid || true
  kill "${PID[$s-rss]}"
  printf '  %-9s RSS %7d → %7d KiB: %6.2f KiB per connection (%s)\n' "$s" "$before" "$after" \
    "$(awk -v a="$after" -v b="$before" -v n="$C10K" 'BEGIN {print (a - b) / n}')" "$(tr '\n' ' ' <"$tmp/idle.out")"
done | tee "$OUT/rss.txt"

# --- 7. tables ----------------------------------------------------------------------------------
[ -s "$OUT/results.tsv" ] && python3 "$HERE/summarize.py" "$OUT/results.tsv" | tee "$OUT/summary.md"
for n in "${!PID[@]}"; do
  [[ $n == *-rss ]] || kill -0 "${PID[$n]}" 2>/dev/null || echo "WARNING: $n exited during the run"
done
cp "$tmp"/*.conf "$tmp"/*.log "$OUT/"
[ -s "$tmp/atomserve.log" ] && { echo "atomserve's log:"; tail -5 "$tmp/atomserve.log"; }
echo; echo "raw output in $OUT; took $(( $(date +%s) - started )) s"

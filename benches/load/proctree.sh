# Sourced by the load scripts: CPU time and memory of a server's process tree, from /proc.
# (A server may fork workers: nginx's master and worker, lighttpd, h2o's helper.)

tree() { # pid → the pid and its descendants
  echo "$1"
  local c
  for c in $(ps -o pid= --ppid "$1"); do tree "$c"; done
}
ticks() { # pid → utime+stime of its process tree, in clock ticks
  local t=0 p s
  for p in $(tree "$1"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
rss_kib() { # pid → VmRSS of its process tree
  local t=0 p
  for p in $(tree "$1"); do
    t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

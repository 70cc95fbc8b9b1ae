# Sourced by benches/tcp_compare.sh and benches/redis_compare.sh: one bounded
# redis-benchmark run against a port and the CPU a process spent on it.
#
#   run PORT PID ARGS...   prints "REQ_PER_S CPU_US_PER_REQUEST": redis-benchmark
#                          -n $N -c 50 -q ARGS against 127.0.0.1:PORT (120 s at
#                          most); CPU = utime + stime of PID from /proc, per request
#   ratio A B              A / B with 2 decimals, "-" when B is 0

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() {
  local port=$1 pid=$2; shift 2
  local t0 t1 rps
  t0=$(ticks "$pid")
  # -q prints progress lines ended by \r, then "GET: 512820.50 requests per second, ...".
  rps=$(timeout 120 redis-benchmark -h 127.0.0.1 -p "$port" -n "$N" -c 50 -q "$@" 2>/dev/null |
    tr '\r' '\n' | awk '/ requests per second/ { print $2; exit }')
  t1=$(ticks "$pid")
  echo "${rps:-0} $(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$N" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

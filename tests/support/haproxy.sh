#!/usr/bin/env bash
# Render an HAProxy config template and run HAProxy from it (Debian `haproxy`).
#
#   bash tests/support/haproxy.sh render TEMPLATE KEY=VALUE...  # to stdout
#   bash tests/support/haproxy.sh up DIR TEMPLATE KEY=VALUE...  # render to DIR/haproxy.cfg, check, start
#   bash tests/support/haproxy.sh down DIR                      # stop the HAProxy started from DIR
#   bash tests/support/haproxy.sh state DIR                     # "listen server state" lines (stats socket)
#
# A template names its values {{KEY}}; rendering fails if one is left
# unreplaced. {{DIR}} is always given (the directory of the rendered config).
# `up` restarts an HAProxy already running from DIR, and waits (polling, 10 s
# deadline) until every `bind` port accepts connections.
set -euo pipefail

die() { echo "haproxy.sh: $*" >&2; exit 1; }

render() { # template key=value...
  local tmpl="$1" kv out
  shift
  [[ -f "$tmpl" ]] || die "no template $tmpl"
  out="$(cat "$tmpl")"
  for kv in "$@"; do
    [[ "$kv" == *=* ]] || die "not KEY=VALUE: $kv"
    out="${out//"{{${kv%%=*}}}"/${kv#*=}}"
  done
  if grep -o '{{[A-Z0-9_]*}}' <<<"$out" | sort -u | grep -q .; then
    die "$tmpl: no value for $(grep -o '{{[A-Z0-9_]*}}' <<<"$out" | sort -u | tr '\n' ' ')"
  fi
  printf '%s\n' "$out"
}

alive() { # pidfile
  local pid
  [[ -f "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q haproxy
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

down() { # dir
  local pidfile="$1/haproxy.pid" pid
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    [[ -e /proc/$pid ]] || break
    sleep 0.1
  done
  [[ -e /proc/$pid ]] && kill -KILL "$pid"
  rm -f "$pidfile"
}

up() { # dir template key=value...
  local dir="$1" tmpl="$2" port
  shift 2
  command -v haproxy >/dev/null 2>&1 || die "haproxy is not installed (apt-get install haproxy)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  render "$tmpl" "DIR=$dir" "$@" >"$dir/haproxy.cfg"
  haproxy -c -q -f "$dir/haproxy.cfg" || die "$dir/haproxy.cfg does not check"
  down "$dir"
  haproxy -D -p "$dir/haproxy.pid" -f "$dir/haproxy.cfg" >>"$dir/haproxy.log" 2>&1 </dev/null
  for port in $(sed -n 's/^ *bind 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/haproxy.cfg"); do
    for _ in $(seq 1 100); do
      port_open "$port" && break
      sleep 0.1
    done
    port_open "$port" || die "HAProxy does not listen on $port; see $dir/haproxy.log"
  done
  echo "haproxy.sh: HAProxy up (pid $(cat "$dir/haproxy.pid"), config $dir/haproxy.cfg)" >&2
}

state() { # dir: name, operational state (2 = up, 0 = down) per server
  echo "show servers state" | socat - "UNIX-CONNECT:$1/haproxy.sock" 2>/dev/null ||
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show servers state\n"); print(s.makefile().read())' "$1/haproxy.sock"
}

case "${1:-}" in
  render) shift && (($# >= 1)) && render "$@" ;;
  up) shift && (($# >= 2)) && up "$@" ;;
  down) (($# == 2)) && down "$2" ;;
  state) (($# == 2)) && state "$2" ;;
  *) die "usage: haproxy.sh render TEMPLATE KEY=VALUE... | up DIR TEMPLATE KEY=VALUE... | down DIR | state DIR" ;;
esac

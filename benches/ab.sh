#!/usr/bin/env bash
# Alternating rounds of the per-message figures for a few builds or proxies: the quick judge of
# one change to the hot path, beside the full run (benches/compare.sh). Placement as there:
# each proxy and the echo target on core 0, the load generator on core 1.
#
#   benches/ab.sh ROUNDS SECONDS NAME=COMMAND...
#
# COMMAND is the proxy's command line with PORT (where it listens) and TARGET (the echo
# target's host:port) to be filled in; NAME `direct` measures the echo target itself, and a
# NAME starting with `floor` or `socat` is spoken to in raw TCP. For example, the build
# before a change against the one after and websocat:
#
#   cp target/release/websockify /tmp/before   # ... change, cargo build --release ...
#   benches/ab.sh 3 3 "before=/tmp/before 127.0.0.1:PORT TARGET" \
#     "after=target/release/websockify 127.0.0.1:PORT TARGET" \
#     "websocat=target/bench/bin/websocat --binary ws-l:127.0.0.1:PORT tcp:TARGET"
#
# Each line: p50/p99 µs of one connection's round trips and the proxy's user/system CPU ticks
# (10 ms) meanwhile, messages/s with 50 connections and the CPU ticks meanwhile, connections/s.
set -euo pipefail
cd "$(dirname "$0")/.."
(( $# >= 3 )) || { sed -n '2,19p' "$0"; exit 2; }
ROUNDS=$1 SECS=$2
shift 2
cargo build --release --locked -q -p wsload
W=target/release/wsload
coproc ECHO { exec taskset -c 0 "$W" echo; }
read -r TARGET_PORT <&"${ECHO[0]}"
P=
trap 'kill $ECHO_PID 2>/dev/null; [[ -n "$P" && "$P" != "$ECHO_PID" ]] && kill $P 2>/dev/null; true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14" "$15}' "/proc/$1/stat"; }
for _ in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*} cmd=${spec#*=}
    if [[ $name == direct ]]; then
      port=$TARGET_PORT P=$ECHO_PID
    else
      port=$(free_port)
      cmd=${cmd//PORT/$port}
      cmd=${cmd//TARGET/127.0.0.1:$TARGET_PORT}
      # shellcheck disable=SC2086
      taskset -c 0 $cmd >/dev/null 2>&1 &
      P=$!
      for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    fi
    to=(--url "ws://127.0.0.1:$port/")
    [[ $name == direct || $name == floor* || $name == socat* ]] && to=(--tcp "127.0.0.1:$port")
    read -r u0 s0 < <(ticks "$P")
    lat=$(taskset -c 1 "$W" latency "${to[@]}" --seconds "$SECS" --repeat 1)
    read -r u1 s1 < <(ticks "$P")
    msg=$(taskset -c 1 "$W" messages "${to[@]}" --conns 50 --seconds "$SECS" --repeat 1)
    read -r u2 s2 < <(ticks "$P")
    con=$(taskset -c 1 "$W" connections "${to[@]}" --seconds "$SECS" --repeat 1)
    python3 - "$name" "$lat" "$msg" "$con" $((u1 - u0)) $((s1 - s0)) $((u2 - u1)) $((s2 - s1)) <<'PY'
import json, sys
name, lat, msg, con = sys.argv[1], *map(json.loads, sys.argv[2:5])
lu, ls, mu, ms = map(int, sys.argv[5:9])
print(f"{name:10} p50 {lat['p50_us']:6.1f} p99 {lat['p99_us']:6.1f} cpu {lu:3}/{ls:3} | "
      f"msgs/s {msg['per_s']:8.0f} cpu {mu:3}/{ms:3} | conns/s {con['per_s']:6.0f}")
PY
    [[ $name == direct ]] || { kill "$P"; wait "$P" 2>/dev/null || true; }
    P=
  done
done

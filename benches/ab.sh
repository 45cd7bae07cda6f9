#!/usr/bin/env bash
# Alternating rounds of chosen figures for a few builds or proxies: the quick judge of
# one change to the hot path, beside the full run (benches/compare.sh). Placement as there:
# each proxy and the echo target on core 0, the load generator on core 1.
#
#   benches/ab.sh ROUNDS SECONDS NAME=COMMAND...
#
# COMMAND is the proxy's command line with PORT (where it listens) and TARGET (the echo
# target's host:port) to be filled in; NAME `direct` measures the echo target itself, and a
# NAME starting with `floor`, `tokio-floor` or `socat` is spoken to in raw TCP, and a NAME
# ending in `-h2` over HTTP/2 (h2c, extended CONNECT) with every connection of a figure a
# stream of one connection, as compare.sh's `ours-h2`. For example, the build before a
# change against the one after and websocat:
#
#   cp target/release/websockify /tmp/before   # ... change, cargo build --release ...
#   benches/ab.sh 3 3 "before=/tmp/before 127.0.0.1:PORT TARGET" \
#     "after=target/release/websockify 127.0.0.1:PORT TARGET" \
#     "websocat=target/bench/bin/websocat --binary ws-l:127.0.0.1:PORT tcp:TARGET"
#
# FIGURES (default "latency messages connections") picks the figures and their order, from
# latency, messages (50 connections), connections, throughput (one connection, 64 KiB
# messages), throughput64 (64 connections) and huge (one connection, 16 MiB messages). Each
# line is one proxy in one round: per figure its rate and the proxy's CPU (user/system ticks
# of 10 ms while the figure ran, and per unit of work: µs per message or connection, s per GB
# echoed).
#
#   FIGURES="connections throughput" benches/ab.sh 4 3 "before=..." "after=..."
set -euo pipefail
cd "$(dirname "$0")/.."
(( $# >= 3 )) || { sed -n '2,25p' "$0"; exit 2; }
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
    [[ $name == direct || $name == floor* || $name == tokio-floor* || $name == socat* ]] &&
      to=(--tcp "127.0.0.1:$port")
    h2=0
    [[ $name == *-h2 ]] && h2=1
    line=$(printf '%-10s' "$name")
    for figure in ${FIGURES:-latency messages connections}; do
      args=() run=$figure
      case $figure in
        messages) args=(--conns 50) ;;
        throughput) args=(--conns 1) ;;
        throughput64) run=throughput args=(--conns 64) ;;
        huge) run=throughput args=(--conns 1 --size $((16 << 20))) ;;
        latency | connections) ;;
        *) echo "ab.sh: unknown figure '$figure' (latency, messages, connections, throughput, throughput64, huge)" >&2; exit 2 ;;
      esac
      if (( h2 )); then
        case $figure in
          messages) args+=(--h2 50) ;;
          throughput64) args+=(--h2 64) ;;
          connections) args+=(--h2 100) ;;
          *) args+=(--h2 1) ;;
        esac
      fi
      read -r u0 s0 < <(ticks "$P")
      out=$(taskset -c 1 "$W" "$run" "${to[@]}" "${args[@]}" --seconds "$SECS" --repeat 1)
      read -r u1 s1 < <(ticks "$P")
      line+=" | "$(python3 - "$figure" "$out" $((u1 - u0)) $((s1 - s0)) "$SECS" <<'PY'
import json, sys
figure, out = sys.argv[1], json.loads(sys.argv[2])
user, system, secs = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cpu_s = (user + system) / 100
ticks = f"cpu {user:3}/{system:3}"
if figure == "latency":
    print(f"p50 {out['p50_us']:6.1f} p99 {out['p99_us']:6.1f} {ticks}")
elif figure.startswith("throughput") or figure == "huge":
    mb = out["mb_per_s"]
    per_gb = f"{cpu_s / (mb * secs / 1000):5.2f}" if mb > 0 else "    —"
    print(f"MB/s {mb:6.0f} {ticks} {per_gb} s/GB")
else:
    rate = out["per_s"]
    each = f"{cpu_s * 1e6 / (rate * secs):6.1f}" if rate > 0 else "     —"
    print(f"{figure}/s {rate:8.0f} {ticks} {each} us each")
PY
)
    done
    echo "$line"
    [[ $name == direct ]] || { kill "$P"; wait "$P" 2>/dev/null || true; }
    P=
  done
done

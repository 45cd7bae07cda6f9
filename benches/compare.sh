#!/usr/bin/env bash
# The benchmark: every proxy, on loopback, against the same echo target, with the same load
# generator (tools/wsload), in one run on one machine, the proxies taking turns figure by
# figure in each of several rounds (medians over the rounds); the results go to
# docs/performance.md as a table with each figure's ratio to direct TCP from this run.
#
#   benches/compare.sh           the full run (about 20 minutes with every peer)
#   benches/compare.sh --short   a smoke run: ours, the floors and direct, tiny durations (CI)
#
# Peers it installs or builds when it can, and skips with the reason when it cannot:
# socat (apt), websockify 0.13 with numpy (PyPI, in a venv), websocat (crates.io). Beside
# them, `floor`: `wsload relay`, a raw TCP relay with nothing but the relaying in it, placed
# like the proxies; what it reaches bounds what any proxy can reach on this machine. And
# `ws-floor`: `wsload relay --ws`, the same relay with the least of RFC 6455 a WebSocket
# bridge must do on top (handshake, unmasking, framing, closing handshake): the bound for a
# WebSocket proxy. And `ws-floor-h2`: `wsload relay --ws --h2`, the WebSocket floor over
# HTTP/2 on the `h2` crate, with ours' windows and frame sizes, measured as `ours-h2` is:
# what HTTP/2 costs a bridge. And `tokio-floor` and `tokio-ws-floor`: `wsload relay --tokio`
# and `--ws --tokio`, the two floors again as a tokio server writes them (a task per
# connection on a current-thread runtime): not bounds of what a bridge must do, but what the
# runtime ours runs on costs beside the epoll floors. And
# `ours-h2`: our proxy again, its sessions as HTTP/2 streams (RFC 8441, h2c): one stream per
# connection for the one-session figures, every session on one connection for 64 at once
# and for msgs/s, 100 per connection for conns/s and idle; the table says how each compares
# to the same proxy over HTTP/1.1. And `ours-bp`: our proxy with `--busy-poll 50`, which
# polls for a client's answer instead of sleeping; the latency figure reports every proxy's
# CPU per round trip, so that what the polling costs stands beside what it buys.
set -euo pipefail
cd "$(dirname "$0")/.."

SHORT=0
[[ "${1:-}" == "--short" ]] && SHORT=1
OUT_DIR=target/bench
mkdir -p "$OUT_DIR"
RESULTS="$OUT_DIR/results.jsonl"
: > "$RESULTS"

if (( SHORT )); then
  SECONDS_PER=0.5; REPEAT=1; IDLE_SESSIONS=500; CONNS_BIG=8
else
  SECONDS_PER=5; REPEAT=${REPEAT:-5}; IDLE_SESSIONS=10000; CONNS_BIG=64
fi

if (( SHORT )); then
  # Proves the bench works end to end (CI); the test build already has these binaries.
  echo "== building ours and the load generator (debug, smoke run)"
  cargo build --locked -p websockify -p wsload
  BIN=target/debug
else
  echo "== building ours and the load generator (release)"
  cargo build --release --locked -p websockify -p wsload
  BIN=target/release
fi
WSLOAD=$BIN/wsload

SKIPPED=()
PEERS=()
if (( ! SHORT )); then
  if command -v socat >/dev/null || (apt-get install -y -qq socat >/dev/null 2>&1); then
    PEERS+=(socat)
  else
    SKIPPED+=("socat: apt-get install socat failed")
  fi
  if [[ -x "$OUT_DIR/venv/bin/websockify" ]] || { python3 -m venv "$OUT_DIR/venv" &&
      "$OUT_DIR/venv/bin/pip" install -q websockify==0.13.0 numpy; }; then
    PEERS+=(websockify)
  else
    SKIPPED+=("websockify 0.13: pip install failed")
  fi
  if [[ -x "$OUT_DIR/bin/websocat" ]] || cargo install --quiet --root "$OUT_DIR" websocat; then
    PEERS+=(websocat)
  else
    SKIPPED+=("websocat: cargo install websocat failed")
  fi
  SKIPPED+=("wstunnel: not a WebSocket-to-TCP bridge for plain clients (its own tunnel protocol needs its own client)")
fi

# The load generator gets a core of its own (the last); the proxy and the echo target share
# core 0, as a proxy and the server behind it share a host. Direct TCP then crosses the same
# cores as every proxy does, so the ratios show what the proxy adds.
PIN_TARGET=(); PIN_PROXY=(); PIN_LOAD=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  LAST=$(( $(nproc) - 1 ))
  PIN_TARGET=(taskset -c 0); PIN_PROXY=(taskset -c 0); PIN_LOAD=(taskset -c "$LAST")
fi

# Each proxied session holds two descriptors in the proxy; ours raises its soft limit to the
# hard one, which this shell cannot raise (that needs CAP_SYS_RESOURCE).
HARD_FDS=$(ulimit -Hn)
if [[ "$HARD_FDS" != unlimited ]] && (( IDLE_SESSIONS > (HARD_FDS - 64) / 2 )); then
  echo "== idle sessions capped at $(( (HARD_FDS - 64) / 2 )): the hard descriptor limit is $HARD_FDS"
  IDLE_SESSIONS=$(( (HARD_FDS - 64) / 2 ))
fi
# Proxies that fork a process per connection are measured with fewer idle sessions: the
# figure is per session, and 10,000 processes would not fit in memory.
FORKING_IDLE_SESSIONS=$(( IDLE_SESSIONS < 500 ? IDLE_SESSIONS : 500 ))
coproc ECHO { exec "${PIN_TARGET[@]}" "$WSLOAD" echo; }
read -r TARGET_PORT <&"${ECHO[0]}"
trap 'kill $ECHO_PID 2>/dev/null || true' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; return 1
}

load() { "${PIN_LOAD[@]}" "$WSLOAD" "$@" >> "$RESULTS"; }

start_proxy() { # NAME PORT
  local name=$1 port=$2
  case "$name" in
    floor) "${PIN_PROXY[@]}" "$WSLOAD" relay --port "$port" --to "127.0.0.1:$TARGET_PORT" >/dev/null & ;;
    ws-floor) "${PIN_PROXY[@]}" "$WSLOAD" relay --ws --port "$port" --to "127.0.0.1:$TARGET_PORT" >/dev/null & ;;
    ws-floor-h2) "${PIN_PROXY[@]}" "$WSLOAD" relay --ws --h2 --port "$port" --to "127.0.0.1:$TARGET_PORT" >/dev/null & ;;
    tokio-floor) "${PIN_PROXY[@]}" "$WSLOAD" relay --tokio --port "$port" --to "127.0.0.1:$TARGET_PORT" >/dev/null & ;;
    tokio-ws-floor) "${PIN_PROXY[@]}" "$WSLOAD" relay --ws --tokio --port "$port" --to "127.0.0.1:$TARGET_PORT" >/dev/null & ;;
    # Ours answers /metrics on a port of its own, read before the idle figure (`quiet`). Its
    # log (a line per session) goes nowhere, as in the runs of record: written to a file it
    # would cost ours the page cache's copies of some 100 MB in a full run.
    ours) "${PIN_PROXY[@]}" "$BIN/websockify" --metrics-listen "127.0.0.1:${METRICS[ours]}" \
      "127.0.0.1:$port" "127.0.0.1:$TARGET_PORT" 2>/dev/null & ;;
    ours-bp) "${PIN_PROXY[@]}" "$BIN/websockify" --busy-poll 50 \
      --metrics-listen "127.0.0.1:${METRICS[ours-bp]}" \
      "127.0.0.1:$port" "127.0.0.1:$TARGET_PORT" 2>/dev/null & ;;
    socat) "${PIN_PROXY[@]}" socat "TCP-LISTEN:$port,fork,reuseaddr,backlog=4096,bind=127.0.0.1" "TCP:127.0.0.1:$TARGET_PORT" & ;;
    websockify) "${PIN_PROXY[@]}" "$OUT_DIR/venv/bin/websockify" "127.0.0.1:$port" "127.0.0.1:$TARGET_PORT" >/dev/null 2>&1 & ;;
    websocat) "${PIN_PROXY[@]}" "$OUT_DIR/bin/websocat" --binary "ws-l:127.0.0.1:$port" "tcp:127.0.0.1:$TARGET_PORT" >/dev/null 2>&1 & ;;
  esac
  PIDS[$name]=$!
  wait_port "$port"
}

# Every proxy runs for the whole run, each on a port of its own (an idle one costs nothing),
# so that the rounds can take turns: a shared machine's speed drifts over a run of many
# minutes, and measuring each proxy's figures in one block of time would hand one proxy the
# slow minutes and another the fast ones. Instead each round measures every figure of every
# proxy in turn, starting one further along the list each round, and the table takes each
# figure's median over the rounds.
declare -A PIDS=() TO=()
NAMES=(direct floor ws-floor ws-floor-h2 tokio-floor tokio-ws-floor ours ours-h2 ours-bp "${PEERS[@]}")
TO[direct]="--tcp 127.0.0.1:$TARGET_PORT"
declare -A PORTS=() METRICS=()
for name in floor ws-floor ws-floor-h2 tokio-floor tokio-ws-floor ours ours-bp "${PEERS[@]}"; do
  port=$(free_port)
  PORTS[$name]=$port
  [[ "$name" == ours* ]] && METRICS[$name]=$(free_port)
  start_proxy "$name" "$port"
  if [[ "$name" == socat || "$name" == floor || "$name" == tokio-floor ]]; then
    TO[$name]="--tcp 127.0.0.1:$port"
  else
    TO[$name]="--url ws://127.0.0.1:$port/"
  fi
done
# The same process over HTTP/2 (figure adds --h2 with the streams per connection).
TO[ours-h2]=${TO[ours]}
PIDS[ours-h2]=${PIDS[ours]}
trap 'kill $ECHO_PID "${PIDS[@]}" 2>/dev/null || true' EXIT

# settle: waits until no proxy (nor the echo target) uses the CPU, before a figure: every
# process shares core 0, and one still busy with the last figure's leftovers (websockify
# 0.13 was seen working through a 16 MiB message long after its client gave up) would slow
# whichever proxy is measured next. One still busy after 30 s is restarted, and said so.
cpu_ticks() { # PID: its CPU ticks, its children's included (socat forks)
  awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0
}
settle() {
  local name busy
  for _ in $(seq 100); do
    busy=()
    for name in floor ws-floor ws-floor-h2 tokio-floor tokio-ws-floor ours ours-bp "${PEERS[@]}"; do
      local before after
      before=$(cpu_ticks "${PIDS[$name]}")
      sleep 0.05
      after=$(cpu_ticks "${PIDS[$name]}")
      (( after - before > 1 )) && busy+=("$name")
    done
    (( ${#busy[@]} == 0 )) && return 0
    sleep 0.25
  done
  for name in "${busy[@]}"; do
    echo "== $name still busy 30 s after its last figure: restarted"
    kill "${PIDS[$name]}" 2>/dev/null || true
    wait "${PIDS[$name]}" 2>/dev/null || true
    start_proxy "$name" "${PORTS[$name]}"
    [[ "$name" == ours ]] && PIDS[ours-h2]=${PIDS[ours]}
  done
}

# figure NAME FIGURE: one repetition of one figure for one proxy. The CPU figure reads the
# proxy's (and for socat its reaped children's) CPU time, so it needs the pid.
figure() {
  local name=$1 fig=$2 pid=${PIDS[$1]:-}
  # shellcheck disable=SC2206
  local to=(${TO[$name]} --label "$name" --seconds "$SECONDS_PER" --repeat 1)
  if [[ "$name" == *-h2 ]]; then
    case "$fig" in
      mbN) to+=(--h2 "$CONNS_BIG") ;;
      messages) to+=(--h2 50) ;;
      connections) to+=(--h2 100) ;;
      *) to+=(--h2 1) ;;
    esac
  fi
  case "$fig" in
    mb1) load throughput "${to[@]}" --conns 1 ${pid:+--pid "$pid"} ;;
    mbN) load throughput "${to[@]}" --conns "$CONNS_BIG" ;;
    huge) load throughput "${to[@]}" --conns 1 --size $((16 << 20)) ;;
    latency) load latency "${to[@]}" ${pid:+--pid "$pid"} ;;
    messages) load messages "${to[@]}" --conns 50 ;;
    connections) load connections "${to[@]}" ;;
    # Only ours speaks `base64` among the peers: websockify 0.13 refuses it (400, it
    # dropped the subprotocol), websocat has no such mode.
    base64) [[ "$name" == ours ]] && load throughput "${to[@]}" --conns 1 --base64 || true ;;
  esac
}

for round in $(seq "$REPEAT"); do
  echo "== round $round of $REPEAT"
  # Each round starts one further along the list.
  shift_by=$(( (round - 1) % ${#NAMES[@]} ))
  order=("${NAMES[@]:shift_by}" "${NAMES[@]:0:shift_by}")
  for fig in mb1 mbN huge latency messages connections base64; do
    for name in "${order[@]}"; do
      settle
      figure "$name" "$fig"
    done
  done
done

# quiet PORT [METRICS_PORT]: waits (up to 20 s) until nothing is connected to PORT and, for
# ours, no place of its connection limit is held (websockify_connection_places_held). The
# idle figure opens as many sessions as ours allows by default (its limit follows the same
# descriptor limit), so a session of an earlier figure still closing would get the last one
# a 503.
held() { # METRICS_PORT: ours' places held, or "?" if /metrics did not answer
  python3 - "$1" <<'PY' 2>/dev/null || echo "?"
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
page = opener.open(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=1).read().decode()
print(next(l.split()[1] for l in page.splitlines()
           if l.startswith("websockify_connection_places_held ")))
PY
}
quiet() {
  local hex places=0 end=$((SECONDS + 20))
  hex=$(printf '%04X' "$1")
  while (( SECONDS < end )); do
    [[ -n "${2:-}" ]] && places=$(held "$2")
    # /proc/net/tcp: local address (ip:port in hex) second, state fourth; every state but
    # listening (0A) and TIME_WAIT (06), so sessions whose client has gone and that the
    # proxy has not closed yet (CLOSE_WAIT) count too.
    awk -v p=":$hex" '$4 != "0A" && $4 != "06" && substr($2, length($2) - 4) == p { n++ }
      END { exit n > 0 }' /proc/net/tcp /proc/net/tcp6 && [[ "$places" == 0 ]] && return 0
    sleep 0.1
  done
  echo "== port $1 still busy after 20 s: ${places} places held; connections (state: count):" >&2
  awk -v p=":$hex" '$4 != "0A" && substr($2, length($2) - 4) == p { print $4 }' \
    /proc/net/tcp /proc/net/tcp6 | sort | uniq -c >&2
}

# Memory per idle session, once per proxy, with the others idle; ours over HTTP/2 with 100
# sessions per connection. Not the HTTP/2 and tokio floors': they measure a protocol's and a
# runtime's cost per message and connection, and their buffers (copy_bidirectional's two of
# 64 KiB a session) say nothing of either.
for name in floor ws-floor ours ours-h2 ours-bp "${PEERS[@]}"; do
  port=${PORTS[$name]:-${PORTS[ours]}}
  metrics=${METRICS[${name%-h2}]:-} # ours-h2 is ours' process
  quiet "$port" "$metrics"
  sessions=$IDLE_SESSIONS
  [[ "$name" == socat || "$name" == websockify ]] && sessions=$FORKING_IDLE_SESSIONS
  extra=()
  [[ "$name" == ours-h2 ]] && extra=(--h2 100)
  # shellcheck disable=SC2206
  "${PIN_LOAD[@]}" "$WSLOAD" idle ${TO[$name]} "${extra[@]}" --label "$name" \
    --pid "${PIDS[$name]}" --sessions "$sessions" >> "$RESULTS" || {
    echo "== $name's idle figure failed${metrics:+ with $(held "$metrics") places held}" >&2
    exit 1
  }
done
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done

COMMAND="benches/compare.sh${1:+ $1}"
python3 benches/table.py "$RESULTS" "$COMMAND" "$SHORT" "${SKIPPED[@]}" > "$OUT_DIR/table.md"
cat "$OUT_DIR/table.md"
if (( ! SHORT )); then
  python3 benches/table.py --update docs/performance.md "$OUT_DIR/table.md"
fi

#!/usr/bin/env bash
# The reliability soak (issue 9): our proxy in front of wsload's TCP echo target, and
# `wsload soak` keeping SESSIONS checksummed sessions open in a rolling mix (lifetimes from
# seconds to minutes, messages from 1 byte to 1 MiB and now and then 16 MiB) while faults are
# injected beside them (resets, vanishing clients, garbage frames, oversize heads and frames,
# slow readers, clients that stop reading an echo flood, token requests the token API never
# answers, and against the web directory range floods and clients that never read). Every
# session's target comes from the JSONTokenApi plugin, asking `wsload token-api`, as in a
# token deployment. The proxy's RSS and descriptors are sampled from /proc every 10 s.
#
#   benches/soak.sh                               30 minutes, 2,000 sessions, release build
#   benches/soak.sh --minutes 3 --sessions 2000   a shorter full run
#   benches/soak.sh --short                       about a minute, 300 sessions, debug build (CI):
#                                                 proves the soak works end to end; docs untouched
#
# The result table goes to stdout and, for full runs, into docs/reliability.md between the
# soak markers; the JSON (every sample) is target/soak/result.json, the proxy's log
# target/soak/proxy.log. Exit status: non-zero if a well-behaved session lost or corrupted
# data or failed otherwise, the proxy kept descriptors, exited, or panicked.
set -euo pipefail
cd "$(dirname "$0")/.."

COMMAND="benches/soak.sh${*:+ $*}"
MINUTES=30; SESSIONS=2000; SHORT=0
while (( $# )); do
  case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --short) SHORT=1; shift ;;
    *) echo "usage: benches/soak.sh [--minutes N] [--sessions N] [--short]" >&2; exit 2 ;;
  esac
done
OUT_DIR=target/soak
mkdir -p "$OUT_DIR"

if (( SHORT )); then
  # The debug binaries CI's test and bench steps build already; short lives and a higher fault
  # rate so that every kind of session and fault happens within the minute.
  [[ "$COMMAND" == *--minutes* ]] || MINUTES=0.75
  [[ "$COMMAND" == *--sessions* ]] || SESSIONS=300
  echo "== building ours and the load generator (debug, short soak)"
  cargo build --locked -p websockify -p wsload
  BIN=target/debug
  MIX=(--min-life 1 --max-life 20 --think-ms 500 --huge-share 0.002 --faults-per-sec 5
       --interval 5)
else
  echo "== building ours and the load generator (release)"
  cargo build --release --locked -p websockify -p wsload
  BIN=target/release
  MIX=()
fi

# Every session costs the proxy two descriptors (client and target) and the load generator
# and the echo target one each; faults come on top (vanishing clients hold theirs for up to a
# minute). Raise the soft limit to the hard one (children inherit it) and size within it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)
if [[ "$FDS" != unlimited ]]; then
  MAX_SESSIONS=$(( (FDS - 1024) / 2 ))
  if (( SESSIONS > MAX_SESSIONS )); then
    echo "== sessions capped at $MAX_SESSIONS: the descriptor limit is $FDS"
    SESSIONS=$MAX_SESSIONS
  fi
fi

coproc ECHO { exec "$BIN/wsload" echo; }
read -r TARGET_PORT <&"${ECHO[0]}"
# The token API: every token to the echo target, except those beginning with "hang", which
# it never answers (the slow plugin fault).
coproc API { exec "$BIN/wsload" token-api --target "127.0.0.1:$TARGET_PORT"; }
read -r API_PORT <&"${API[0]}"
PROXY_PID=
trap 'kill $ECHO_PID $API_PID 2>/dev/null || true; [[ -n "$PROXY_PID" ]] && kill $PROXY_PID 2>/dev/null || true' EXIT

# A web directory with one file of some MiB, for the web faults (range floods, clients that
# never read an answer); the proxy gives up on a client that takes nothing for 5 s.
mkdir -p "$OUT_DIR/web"
head -c $((8 << 20)) /dev/zero > "$OUT_DIR/web/soak.bin"
SEND_TIMEOUT=5
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/websockify" --web "$OUT_DIR/web" --send-timeout "$SEND_TIMEOUT" \
  --token-plugin JSONTokenApi --token-source "http://127.0.0.1:$API_PORT/token/%s" \
  "127.0.0.1:$PORT" 2> "$OUT_DIR/proxy.log" &
PROXY_PID=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
  sleep 0.1
done

echo "== soak: $MINUTES min, $SESSIONS sessions, proxy pid $PROXY_PID on $PORT, echo on $TARGET_PORT, token API on $API_PORT"
STATUS=0
"$BIN/wsload" soak --url "ws://127.0.0.1:$PORT/?token=soak" --pid "$PROXY_PID" \
  --minutes "$MINUTES" --sessions "$SESSIONS" "${MIX[@]}" \
  --web-file /soak.bin --send-timeout "$SEND_TIMEOUT" --hanging-token hang \
  --out "$OUT_DIR/result.json" --markdown "$OUT_DIR/table.md" --command "$COMMAND" || STATUS=$?

# A panic in a session task does not end the proxy, so the soak's checks could miss it.
PANICS=$(grep -c 'panicked' "$OUT_DIR/proxy.log" || true)
if (( PANICS > 0 )); then
  echo "== FAILED: the proxy logged $PANICS panics (target/soak/proxy.log):"
  grep -m 5 'panicked' "$OUT_DIR/proxy.log"
  printf '\n**The proxy logged %s panics.**\n' "$PANICS" >> "$OUT_DIR/table.md"
  STATUS=1
fi
if ! kill -0 "$PROXY_PID" 2>/dev/null; then
  echo "== FAILED: the proxy is no longer running"
  STATUS=1
fi

if (( ! SHORT )) && [[ -s "$OUT_DIR/table.md" ]]; then
  python3 - docs/reliability.md "$OUT_DIR/table.md" <<'PY'
import sys
START, END = "<!-- soak:start -->", "<!-- soak:end -->"
path, table = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
head, rest = text.split(START, 1)
_, tail = rest.split(END, 1)
open(path, "w").write(f"{head}{START}\n{table}{END}{tail}")
PY
  echo "== result written to docs/reliability.md"
fi
exit "$STATUS"

#!/usr/bin/env bash
# The compression figures (permessage-deflate, issue 24): two realistic streams and random
# data echoed through ours with each compression setting against compression off, with the
# same load generator (`wsload replay`, which offers the extension as browsers do, inflates
# the echo and checks it byte for byte), placed as benches/compare.sh places it: the load on
# the last core, the proxy and the echo target sharing core 0. Prints a markdown table (also
# in target/bench-compression/table.md) for docs/performance.md.
#
#   benches/compression.sh            the full run (about 6 minutes)
#   benches/compression.sh --short    a smoke run (CI): debug builds, tiny durations, 500 idle
#                                     sessions; proves the bench works, measures nothing
#
# The streams (benches/streams.py): a terminal's output (real commands' output in a pty's
# read sizes) and a VNC session in raw encoding (framebuffer updates of pages Chromium renders
# at 1280x800: text, the start page, noVNC's page, a directory listing). Chromium comes from
# Debian's package, installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SHORT=0
[[ "${1:-}" == "--short" ]] && SHORT=1
OUT_DIR=target/bench-compression
mkdir -p "$OUT_DIR"
RESULTS="$OUT_DIR/results.jsonl"
: > "$RESULTS"
if (( SHORT )); then
  SECONDS_PER=0.5; REPEAT=1; IDLE_SESSIONS=500
else
  SECONDS_PER=3; REPEAT=5; IDLE_SESSIONS=10000
fi

if (( SHORT )); then
  # Proves the bench works end to end (CI); the test build already has these binaries.
  echo "== building ours and the load generator (debug, smoke run)"
  cargo build --locked -p websockify --bin websockify && cargo build --locked -p wsload
  BIN=target/debug
else
  echo "== building ours and the load generator (release)"
  cargo build --release --locked -p websockify --bin websockify &&
    cargo build --release --locked -p wsload
  BIN=target/release
fi
WSLOAD=$BIN/wsload

if ! command -v chromium >/dev/null; then
  echo "== installing Chromium (Debian) for the screens of the VNC stream"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends chromium >/dev/null || { echo "cannot install chromium" >&2; exit 1; }
fi
pages=("file://$PWD/docs/architecture.md" "file://$PWD/web/index.html"
       "file://$PWD/web/vnc.html" "file:///usr/share/doc/")
(( SHORT )) && pages=("${pages[0]}")
shots=()
for i in "${!pages[@]}"; do
  shot="$OUT_DIR/screen$i.png"
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$OUT_DIR/chromium" --hide-scrollbars --window-size=1280,800 \
    --screenshot="$shot" "${pages[$i]}" >/dev/null 2>&1
  [[ -s "$shot" ]] || { echo "Chromium did not render ${pages[$i]}" >&2; exit 1; }
  shots+=("$shot")
done
python3 benches/streams.py "$OUT_DIR" "${shots[@]}"

PIN_TARGET=(); PIN_PROXY=(); PIN_LOAD=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
  LAST=$(( $(nproc) - 1 ))
  PIN_TARGET=(taskset -c 0); PIN_PROXY=(taskset -c 0); PIN_LOAD=(taskset -c "$LAST")
fi
HARD_FDS=$(ulimit -Hn)
if [[ "$HARD_FDS" != unlimited ]] && (( IDLE_SESSIONS > (HARD_FDS - 64) / 2 )); then
  IDLE_SESSIONS=$(( (HARD_FDS - 64) / 2 ))
fi

coproc ECHO { exec "${PIN_TARGET[@]}" "$WSLOAD" echo; }
read -r TARGET_PORT <&"${ECHO[0]}"
declare -A PIDS PORTS
trap 'kill $ECHO_PID "${PIDS[@]}" 2>/dev/null || true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; return 1
}

# The settings: name and flags. `off` is today's default (the client still offers).
SETTINGS=(off level1 level6 level9 min0 min1k context)
(( SHORT )) && SETTINGS=(off level1 context)
declare -A FLAGS=(
  [off]=""
  [level1]="--compression --compression-level 1"
  [level6]="--compression --compression-level 6"
  [level9]="--compression --compression-level 9"
  [min0]="--compression --compression-min-size 0"
  [min1k]="--compression --compression-min-size 1KiB"
  [context]="--compression --compression-context"
)
for name in "${SETTINGS[@]}"; do
  port=$(free_port)
  # shellcheck disable=SC2086
  "${PIN_PROXY[@]}" "$BIN/websockify" ${FLAGS[$name]} "127.0.0.1:$port" "127.0.0.1:$TARGET_PORT" 2>/dev/null &
  PIDS[$name]=$!; PORTS[$name]=$port
  wait_port "$port"
done

for round in $(seq "$REPEAT"); do
  echo "== round $round of $REPEAT"
  for stream in terminal vnc-raw random; do
    for name in "${SETTINGS[@]}"; do
      source=(--stream "$OUT_DIR/$stream.bin")
      # A terminal answers as it is typed at: its output keeps the pty's read sizes.
      [[ $stream == terminal ]] && source+=(--paced)
      [[ $stream == random ]] && source=(--random 65536)
      "${PIN_LOAD[@]}" "$WSLOAD" replay --url "ws://127.0.0.1:${PORTS[$name]}/" --deflate \
        "${source[@]}" --seconds "$SECONDS_PER" --repeat 1 --pid "${PIDS[$name]}" \
        --label "$name/$stream" >> "$RESULTS"
    done
  done
done
for name in level1 context; do
  "${PIN_LOAD[@]}" "$WSLOAD" idle --url "ws://127.0.0.1:${PORTS[$name]}/" --deflate \
    --pid "${PIDS[$name]}" --sessions "$IDLE_SESSIONS" --repeat 1 --label "$name" >> "$RESULTS"
done

python3 - "$RESULTS" "${SETTINGS[@]}" > "$OUT_DIR/table.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
settings = sys.argv[2:]
def med(name, stream, key):
    v = [r[key] for r in rows if r.get("figure") == "replay" and r["label"] == f"{name}/{stream}"]
    return statistics.median(v) if v else float("nan")
idle = {r["label"]: r for r in rows if r.get("figure") == "idle"}
print("| setting | terminal: wire/payload | terminal: CPU s/GB | VNC raw: wire/payload | VNC raw: CPU s/GB | random 64 KiB: MB/s | idle KiB/session (negotiated) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
off_mb = med("off", "random", "mb_per_s")
for name in settings:
    i = idle.get(name)
    idle_cell = f"{i['kib_per_session']:.1f} at {i['sessions']:,}" if i else "—"
    negotiated = all(r["negotiated"] for r in rows if r.get("figure") == "replay" and r["label"].startswith(name + "/"))
    mb = med(name, "random", "mb_per_s")
    print(f"| {name}{'' if negotiated or name == 'off' else ' (not negotiated!)'} "
          f"| {med(name, 'terminal', 'wire_ratio'):.3f} | {med(name, 'terminal', 'cpu_s_per_gb'):.2f} "
          f"| {med(name, 'vnc-raw', 'wire_ratio'):.3f} | {med(name, 'vnc-raw', 'cpu_s_per_gb'):.2f} "
          f"| {mb:.0f} ({mb / off_mb:.2f}x) | {idle_cell} |")
PY
cat "$OUT_DIR/table.md"

#!/usr/bin/env bash
# By hand, not in CI: the same server cases run by the suite's own runner, `wstest` from the
# PyPI package autobahntestsuite 25.10.1, which needs Python 2.7 (it does not run on Python 3:
# see docs/conformance.md). Uses PYTHON2 (default: pyenv's 2.7.18, which this machine image
# has), installs autobahntestsuite into target/autobahn-py2 when missing (slow: Twisted and
# friends build for Python 2), runs it against the proxy and a TCP echo target, writes the
# report to target/autobahn-wstest/, and lists the cases whose verdicts differ from kosoku's
# run in target/autobahn/ (run tests/autobahn/run.sh first for that).
set -euo pipefail
cd "$(dirname "$0")/../.."

py2=${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}
[ -x "$py2" ] || { echo "no Python 2.7 at $py2 (set PYTHON2)" >&2; exit 1; }
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
lib=$target_dir/autobahn-py2/lib
out=$target_dir/autobahn-wstest

if ! "$py2" -c "import site; site.addsitedir('$lib'); import autobahntestsuite" 2>/dev/null; then
    "$py2" -m pip install --quiet --target "$lib" autobahntestsuite==25.10.1
fi
cargo build --quiet --bin websockify

# A TCP echo target (each read of up to 64 KiB written back) and the proxy in front of it.
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
python3 - 2>/dev/null <<'PY' > "$target_dir/autobahn-echo.port" &
import asyncio, socket
async def echo(r, w):
    w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := await r.read(65536):
        w.write(data)
        await w.drain()
    w.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
PY
pids+=($!)
for _ in $(seq 50); do [ -s "$target_dir/autobahn-echo.port" ] && break; sleep 0.1; done
echo_port=$(cat "$target_dir/autobahn-echo.port")
proxy_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$target_dir/debug/websockify" "127.0.0.1:$proxy_port" "127.0.0.1:$echo_port" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && break; sleep 0.1; done

rm -rf "$out" && mkdir -p "$out"
cat > "$out/spec.json" <<JSON
{"outdir": "$out", "servers": [{"agent": "websockify-rs", "url": "ws://127.0.0.1:$proxy_port"}],
 "cases": ["*"], "exclude-cases": [], "exclude-agent-cases": {}}
JSON
"$py2" -c "
import site, sys
site.addsitedir('$lib')
from autobahntestsuite import wstest
sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', '$out/spec.json']
wstest.run()
" > "$out/wstest.log" 2>&1
echo "wstest report: $out/index.html"

python3 - "$out/index.json" "$target_dir/autobahn/index.json" <<'PY'
import json, os, sys
wstest = next(iter(json.load(open(sys.argv[1])).values()))
if not os.path.exists(sys.argv[2]):
    sys.exit(f"{len(wstest)} cases run; no kosoku report at {sys.argv[2]} to compare with")
kosoku = next(iter(json.load(open(sys.argv[2])).values()))
verdict = lambda e: (e["behavior"], e["behaviorClose"], e["remoteCloseCode"])
key = lambda i: [int(p) for p in i.split(".")]
differ = [i for i in sorted(wstest, key=key) if verdict(wstest[i]) != verdict(kosoku.get(i, wstest[i] | {"behavior": "MISSING"}))]
for i in differ:
    print(f"{i}: wstest {verdict(wstest[i])}, kosoku {verdict(kosoku[i]) if i in kosoku else 'missing'}")
print(f"{len(wstest) - len(differ)} of {len(wstest)} cases got the same verdicts from both runners")
PY

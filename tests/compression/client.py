"""An independent permessage-deflate client: Python's `websockets` (PyPI) against the proxy.

Usage: client.py URL CASES_JSON. Each case is an object with the extension's parameters as
websockets' ClientPerMessageDeflateFactory takes them (`server_no_context_takeover`,
`client_no_context_takeover`, `server_max_window_bits`, `client_max_window_bits`) and
`sizes`, the message sizes to echo, each once compressible (text-like) and once random. The
echo comes from a TCP target, so it may arrive in other message sizes: the bytes are compared
as a stream. Prints one JSON line per case: the answered extension header and what matched.
"""

import base64
import hashlib
import json
import os
import sys

from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect


def compressible(size: int) -> bytes:
    line = b"user@host:~$ tail -f /var/log/syslog | grep websockify -- session 42 ok\n"
    return (line * (size // len(line) + 1))[:size]


def echo(ws, data: bytes, text: bool) -> bool:
    """One message out, its echo back (base64 text under the `base64` subprotocol)."""
    ws.send(base64.b64encode(data).decode() if text else data)
    got = bytearray()
    while len(got) < len(data):
        message = ws.recv(timeout=60)
        got += base64.b64decode(message) if text else message
    return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def run(url: str, case: dict) -> dict:
    params = {k: case[k] for k in (
        "server_no_context_takeover", "client_no_context_takeover",
        "server_max_window_bits", "client_max_window_bits") if k in case}
    factory = ClientPerMessageDeflateFactory(**params)
    result = {"case": params, "echoes": 0, "mismatches": []}
    with connect(url, extensions=[factory], compression=None, max_size=None,
                 subprotocols=case.get("subprotocols")) as ws:
        result["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
        result["negotiated"] = [type(e).__name__ for e in ws.protocol.extensions]
        text = ws.subprotocol == "base64"
        result["subprotocol"] = ws.subprotocol
        for size in case["sizes"]:
            for kind, data in (("compressible", compressible(size)), ("random", os.urandom(size))):
                if echo(ws, data, text):
                    result["echoes"] += 1
                else:
                    result["mismatches"].append(f"{kind} {size}")
    return result


def main() -> None:
    url, cases = sys.argv[1], json.loads(sys.argv[2])
    for case in cases:
        print(json.dumps(run(url, case)), flush=True)


if __name__ == "__main__":
    main()

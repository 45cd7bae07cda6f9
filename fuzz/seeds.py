#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/seeds/NAME/.

The seeds are meaningful inputs (real upgrade requests of every protocol version, Hixie and
HyBi frames, token files, configuration files); `cargo fuzz run` grows a corpus from them and
`cargo fuzz cmin` keeps what adds coverage in fuzz/corpus/NAME/. Run from the repository root:
    python3 fuzz/seeds.py
See docs/fuzzing.md.
"""

import base64
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def crlf(lines, body=b""):
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- request_head: real requests of every version, and the ways they go wrong -------------
KEY1 = "18x 6]8vM;54 *(5:  {   U1]8  z [  8"
KEY2 = "1_ tx7X d  <  nw  334J702) 7]o}` 0"
HYBI = [
    "GET /websockify?token=vnc1 HTTP/1.1",
    "Host: proxy.example:6080",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Origin: http://proxy.example:6080",
]
requests = {
    "hybi13_binary": crlf(HYBI + ["Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: binary"]),
    "hybi13_base64": crlf(HYBI + ["Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: base64"]),
    "hybi13_none": crlf(HYBI + ["Sec-WebSocket-Version: 13"]),
    "hybi8": crlf(HYBI[:4] + ["Connection: keep-alive, Upgrade", "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
                              "Sec-WebSocket-Version: 8", "Sec-WebSocket-Origin: http://o"]),
    "hybi7": crlf(HYBI + ["Sec-WebSocket-Version: 7", "Sec-WebSocket-Protocol: base64, binary"]),
    "hybi13_with_frame": crlf(HYBI + ["Sec-WebSocket-Version: 13"],
                              b"\x82\x85\x01\x02\x03\x04" + bytes(b ^ m for b, m in zip(b"hello", b"\x01\x02\x03\x04\x01"))),
    "hybi_bearer": crlf(HYBI[:5] + ["Sec-WebSocket-Version: 13",
                                    "Sec-WebSocket-Protocol: binary, base64url.bearer.authorization.k8s.io.dm5jLzAx"]),
    "hybi_cookie_token": crlf(["GET /?a=1&token=x%2By+z HTTP/1.1", "Host: [::1]:6080", "Cookie: a=b; token=\"c1\"",
                               "Upgrade: websocket", "Connection: Upgrade",
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]),
    "hybi_426": crlf(HYBI + ["Sec-WebSocket-Version: 99"]),
    "hybi_no_version": crlf(HYBI),
    "hybi_bad_key": crlf(HYBI[:4] + ["Sec-WebSocket-Key: short", "Sec-WebSocket-Version: 13"]),
    "hybi_unknown_protocol": crlf(HYBI + ["Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: chat"]),
    "hybi_post": crlf(["POST / HTTP/1.1"] + HYBI[1:] + ["Sec-WebSocket-Version: 13"]),
    "hybi_http10": crlf(["GET / HTTP/1.0"] + HYBI[1:] + ["Sec-WebSocket-Version: 13"]),
    "hixie75": crlf(["GET /demo HTTP/1.1", "Upgrade: WebSocket", "Connection: Upgrade",
                     "Host: example.com", "Origin: http://example.com", "WebSocket-Protocol: base64"],
                    b"\x00aGVsbG8=\xff"),
    "hixie76": crlf(["GET /demo HTTP/1.1", "Host: example.com", "Connection: Upgrade",
                     "Sec-WebSocket-Key2: 12998 5 Y3 1  .P00", "Sec-WebSocket-Protocol: sample base64",
                     "Upgrade: WebSocket", "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5",
                     "Origin: http://example.com"], b"^n:ds[4U"),
    "hixie76_base64_frames": crlf(["GET /websockify HTTP/1.1", "Upgrade: WebSocket", "Connection: Upgrade",
                                   "Host: h:6080", "Origin: http://h", "Sec-WebSocket-Protocol: base64",
                                   f"Sec-WebSocket-Key1: {KEY1}", f"Sec-WebSocket-Key2: {KEY2}"],
                                  b"Tm[K T2u\x00aGk=\xff\x00\xff\xff\x00"),
    "hixie76_sample_only": crlf(["GET /demo HTTP/1.1", "Host: example.com", "Connection: Upgrade",
                                 "Sec-WebSocket-Key2: 12998 5 Y3 1  .P00", "Sec-WebSocket-Protocol: sample",
                                 "Upgrade: WebSocket", "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5",
                                 "Origin: http://example.com"], b"^n:ds[4U"),
    "hixie76_short_key": crlf(["GET / HTTP/1.1", "Upgrade: WebSocket", "Connection: Upgrade", "Host: h",
                               f"Sec-WebSocket-Key1: {KEY1}", f"Sec-WebSocket-Key2: {KEY2}"], b"Tm["),
    "hixie76_one_key": crlf(["GET / HTTP/1.1", "Upgrade: WebSocket", "Connection: Upgrade", "Host: h",
                             f"Sec-WebSocket-Key1: {KEY1}"]),
    "plain_get": crlf(["GET /vnc.html HTTP/1.1", "Host: proxy.example", "Accept: */*",
                       "If-None-Match: \"abc\""]),
    "plain_head_lf_only": b"HEAD /app/ HTTP/1.1\nHost: h\n\n",
    "asterisk": crlf(["OPTIONS * HTTP/1.1", "Host: h"]),
    "absolute_uri": crlf(["GET http://h:6080/x?y=%zz HTTP/1.1", "Host: h:6080", "Upgrade: websocket"]),
    "partial": b"GET / HTTP/1.1\r\nHost: h\r\nUpgr",
    "malformed": b"\x01\x02garbage\r\n\r\n",
    "bad_header_value": b"GET / HTTP/1.1\r\nHost: h\x7f\r\n\r\n",
    "big": crlf(["GET / HTTP/1.1", "Cookie: " + "a" * 17000]),
    "many_headers": crlf(["GET / HTTP/1.1"] + [f"X-{i}: {i}" for i in range(101)]),
}
for name, data in requests.items():
    write("request_head", name, data)

# --- sniff: first bytes --------------------------------------------------------------------
for name, data in {
    "tls13_hello": b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(range(32)),
    "sslv2_hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10",
    "flash": b"<policy-file-request/>\x00",
    "flash_prefix": b"<policy-fi",
    "http": requests["hybi13_binary"],
    "html": b"<html>",
    "empty": b"",
}.items():
    write("sniff", name, data)


# --- hixie_frames: first byte splits, then frames -------------------------------------------
def hixie(payload):
    return b"\x00" + base64.b64encode(payload) + b"\xff"


for name, data in {
    "messages_then_close": b"\x40" + hixie(b"hi") + hixie(b"") + hixie(bytes(range(256))) + b"\xff\x00",
    "split_in_frame": b"\x07" + hixie(b"RFB 003.008\n") + hixie(b"\x01"),
    "bad_type": b"\x02" + hixie(b"x") + b"\x80\x05hello",
    "bad_base64": b"\x03\x00!!\xff",
    "non_canonical": b"\x05\x00QR==\xff",
    "unterminated": b"\x09\x00aGVsbG8",
    "ff_then_other": b"\x01\xff\x01",
}.items():
    write("hixie_frames", name, data)


# --- hybi_frames: first byte chooses encoding/split/chunk, then client frames --------------
def frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d", length=None):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload) if length is None else length
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    if mask is None:
        head = bytes([head[0], head[1] & 0x7F]) + head[2:]
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


BINARY, TEXT, CONT, CLOSE, PING, PONG = 2, 1, 0, 8, 9, 10
b64 = lambda p: base64.b64encode(p)
for name, data in {
    "rfc_hello_binary": b"\x00" + frame(BINARY, b"Hello"),
    "fragmented": b"\x26" + frame(BINARY, b"Hel", fin=False) + frame(PING, b"p") + frame(CONT, b"lo"),
    "len16": b"\x44" + frame(BINARY, bytes(300)) + frame(CLOSE, b"\x03\xe8bye"),
    "len16_base64": b"\x45" + frame(TEXT, b64(bytes(range(200)))) + frame(CLOSE, b"\x03\xe8bye"),
    "len64_announced": b"\x00" + frame(BINARY, b"", length=1 << 40),
    "len64_overflow": b"\x00\x82\xff" + b"\xff" * 8,
    "base64_text": b"\x01" + frame(TEXT, b64(b"RFB 003.008\n")) + frame(CLOSE, b""),
    "base64_fragmented": b"\x63" + frame(TEXT, b"aGVs", fin=False) + frame(CONT, b"bG8=") + frame(CLOSE, b"\x0f\xa0"),
    "base64_bad": b"\x01" + frame(TEXT, b"QR=="),
    "text_in_binary": b"\x00" + frame(TEXT, b"x"),
    "unmasked": b"\x00" + frame(BINARY, b"x", mask=None),
    "reserved_bits": b"\x00\xc2\x80abcd",
    "reserved_opcode": b"\x00\x83\x80abcd",
    "fragmented_ping": b"\x00\x09\x80abcd",
    "close_bad_code": b"\x00" + frame(CLOSE, b"\x03\xed"),
    "close_one_byte": b"\x00" + frame(CLOSE, b"\x03"),
    "close_bad_utf8": b"\x00" + frame(CLOSE, b"\x03\xe8\xff"),
    "continuation_first": b"\x00" + frame(CONT, b"x"),
    "new_inside_fragmented": b"\x00" + frame(BINARY, b"a", fin=False) + frame(BINARY, b"b"),
    "pings": b"\xe0" + frame(PING, b"") + frame(PING, b"x" * 125) + frame(PONG, b"y") + frame(BINARY, b"z"),
    "truncated": b"\x1e" + frame(BINARY, b"0123456789")[:9],
}.items():
    write("hybi_frames", name, data)

# --- base64_payload ------------------------------------------------------------------------
for name, data in {
    "empty": b"",
    "rfb": b64(b"RFB 003.008\n"),
    "pad1": b"aGk=",
    "pad2": b"YQ==",
    "all_bytes": b64(bytes(range(256))),
    "long": b64(bytes(range(256)) * 8),
    "non_canonical": b"QR==",
    "no_padding": b"YQ",
    "url_alphabet": b"-_-_",
    "whitespace": b"aGk= ",
    "nul": b"aG\x00k=",
}.items():
    write("base64_payload", name, data)

# --- token_file ----------------------------------------------------------------------------
write("token_file", "websockify_example",
      "# websockify's format\n"
      "vnc1: 192.168.0.10:5900\n"
      "vnc2: vnc.internal:5901\n"
      "v6: [::1]:5902\n"
      "sock: unix_socket:/run/vnc/1.sock\n"
      "\n"
      "   # indented comment\n")
write("token_file", "problems",
      "no colon space:here\n"
      "a: b: c:1\n"
      "noport: host\n"
      "badport: host:99999\n"
      "emptyhost: :5900\n"
      "tab:\thost:1\r\n"
      "dup: h:1\ndup: h:2\n"
      ": emptytoken:1\n"
      "a:: h:1\n"
      "t: unix_socket:\n")
write("token_file", "unicode", "tök: höst:1\nnbsp:\u00a0h:1\nnel:\u0085h:2\n")

# --- config_file ---------------------------------------------------------------------------
write("config_file", "readme",
      'listen = "0.0.0.0:6080"\ntarget = "vnc.internal:5900"\nheartbeat = 30\nidle_timeout = 0\n')
write("config_file", "tokens",
      'listen = ":6080"\ntoken_plugin = "TokenFile"\ntoken_source = "/etc/websockify/tokens"\n'
      'host_token = false\nweb = "/usr/share/novnc"\nfile_only = true\nlog_format = "json"\n')
write("config_file", "tls",
      'listen = "[::]:443"\ntarget = "127.0.0.1:5900"\ncert = "/etc/ssl/c.pem"\nkey = "/etc/ssl/k.pem"\n'
      'key_password = "s3cret"\nssl_only = true\nssl_version = "tlsv1_2"\n'
      'ssl_ciphers = "ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256"\nverify_client = true\n'
      'cafile = "/etc/ssl/ca.pem"\nssl_target = true\n')
write("config_file", "unix",
      'unix_listen = "/run/websockify.sock"\nunix_listen_mode = 0o660\nunix_target = "/run/vnc.sock"\n'
      'run_once = "yes"\ntimeout = "30"\nverbose = 1\n')
write("config_file", "wrap",
      'listen = "5901"\nwrap_command = ["vncserver", "-geometry", "1024 768"]\nwrap_mode = "respawn"\n'
      'record = "/tmp/rec"\nsyslog = "/dev/log"\nlegacy_syslog = true\nmetrics_listen = "127.0.0.1:9187"\n'
      'shutdown_grace = 0\nauth_plugin = "BasicHTTPAuth"\nauth_source = "user:pw"\n')
write("config_file", "wrap_string", 'listen = "5901"\nwrap_command = "vncserver -geometry \\"1024 768\\""\n')
write("config_file", "errors",
      'listen = 6080\ntarget = "nohost"\nheartbeat = -1\nunknown_key = 1\nunix_listen_mode = "999"\n')
write("config_file", "not_toml", "listen = \n[table\n")

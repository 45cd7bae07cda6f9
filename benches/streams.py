"""The two streams of the compression benchmark (benches/compression.sh), as wsload replay
reads them: records of a 4-byte big-endian length and that many bytes.

- terminal: a terminal session's output: real commands' output (listings, a process table,
  a licence text) cut the way a terminal server sends a pty's reads: three in ten are a few
  bytes (typing echoed), the rest up to 4 KiB (a command's output flooding in).
- vnc-raw: a VNC server's framebuffer updates in raw encoding (32 bits per pixel, as noVNC
  asks for true colour): each screen, a page rendered by Chromium at 1280x800 (text, the
  start page, noVNC's own page, a directory listing), sent as one FramebufferUpdate and
  relayed in the 64 KiB reads a proxy makes.

Usage: streams.py OUT_DIR SCREENSHOT.png...  (the PNGs come from Chromium's --screenshot).
"""

import random
import struct
import subprocess
import sys
import zlib


def records(path: str, messages) -> None:
    with open(path, "wb") as f:
        for m in messages:
            f.write(struct.pack(">I", len(m)) + m)


def terminal() -> list:
    commands = [
        "ls -la /usr/bin /usr/lib /etc",
        "ps aux",
        "cat /usr/share/common-licenses/GPL-3",
        "env | sort",
        "df -h; mount",
    ]
    out = b"".join(
        subprocess.run(c, shell=True, capture_output=True).stdout for c in commands
    )
    rng = random.Random(7)
    messages, at = [], 0
    while at < len(out):
        n = rng.randint(1, 16) if rng.random() < 0.3 else rng.randint(64, 4096)
        messages.append(out[at : at + n])
        at += n
    return messages


def png_pixels(path: str):
    """Width, height and BGRX pixels of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    at, idat = 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw = zlib.decompress(idat)
    bpp = 3 if colour == 2 else 4
    stride = w * bpp
    prev = bytearray(stride)
    out = bytearray()
    for y in range(h):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        prev = line
        for x in range(w):
            r, g, bl = line[x * bpp : x * bpp + 3]
            out += bytes((bl, g, r, 0))
    return w, h, bytes(out)


def vnc_raw(pngs) -> list:
    stream = b""
    for path in pngs:
        w, h, pixels = png_pixels(path)
        # FramebufferUpdate: type 0, padding, one rectangle at 0,0 of w x h, encoding 0 (raw).
        stream += struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 0, 0, w, h, 0) + pixels
    return [stream[i : i + 65536] for i in range(0, len(stream), 65536)]


def main() -> None:
    out, pngs = sys.argv[1], sys.argv[2:]
    records(f"{out}/terminal.bin", terminal())
    records(f"{out}/vnc-raw.bin", vnc_raw(pngs))


if __name__ == "__main__":
    main()

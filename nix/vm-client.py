"""One WebSocket round trip through the proxy (for the NixOS VM test): upgrade, send a
masked binary frame, expect it echoed."""
import base64
import os
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(
    f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
)
head = b""
while b"\r\n\r\n" not in head:
    head += sock.recv(4096)
assert head.startswith(b"HTTP/1.1 101"), head
payload = b"hello from the VM"
mask = os.urandom(4)
masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
sock.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + masked)
frame = head.split(b"\r\n\r\n", 1)[1]
while len(frame) < 2 + len(payload):
    frame += sock.recv(4096)
assert frame[0] == 0x82 and frame[2 : 2 + len(payload)] == payload, frame
print("echoed")

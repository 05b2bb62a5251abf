#!/usr/bin/env python3
"""Streams a WAV file (or raw PCM from stdin) to `ced serve`'s /v1/audio/stream WebSocket and
prints the server's messages (JSON lines): the example client of the stream protocol, and
what scripts/serve_check.py uses. Standard library only (a minimal RFC 6455 client).

    scripts/ced_stream_client.py ws://127.0.0.1:8080/v1/audio/stream recording.wav
    scripts/ced_stream_client.py --ongoing --threshold 0.7 --merge-gap 0.5 URL rec.wav
    arecord -q -f S16_LE -r 16000 -c 1 -t raw | scripts/ced_stream_client.py --raw-rate 16000 URL -

The protocol: send {"type": "start", "sample_rate": R, "format": "s16le"|"f32le",
"channels": C, ...event options...}, then binary messages of interleaved little-endian
samples (any size), then {"type": "stop"}; the server sends "started", "window", "event"
messages and "done" before it closes (or "error" and closes).
"""
import argparse
import base64
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
import wave


class WebSocket:
    """A blocking WebSocket client: text and binary messages, no extensions."""

    def __init__(self, url, headers=None, timeout=60):
        u = urllib.parse.urlparse(url)
        if u.scheme != "ws":
            raise ValueError("only ws:// URLs (put a TLS proxy in front for wss://)")
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        lines = [f"GET {path} HTTP/1.1", f"Host: {u.hostname}:{u.port or 80}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during the handshake")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n")[0].decode()
        if " 101 " not in status + " ":
            raise ConnectionError(f"upgrade refused: {status}\n{self.buffer.decode(errors='replace')}")
        self.lock = threading.Lock()
        self.closed = False

    def _send(self, opcode, payload):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload, mask)
        with self.lock:
            self.sock.sendall(header + mask + masked)

    def send_text(self, text):
        self._send(0x1, text.encode())

    def send_binary(self, data):
        self._send(0x2, data)

    def close(self, code=1000):
        if not self.closed:
            try:
                self._send(0x8, struct.pack(">H", code))
            except OSError:
                pass
            self.closed = True

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def receive(self):
        """The next message: ("text", str), ("binary", bytes) or ("close", code)."""
        parts, kind = [], None
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = _mask(payload, mask)
            if opcode == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close()
                return "close", code
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                kind = "text" if opcode == 0x1 else "binary"
            parts.append(payload)
            if b0 & 0x80:
                data = b"".join(parts)
                return kind, data.decode() if kind == "text" else data


def _mask(data, mask):
    n = len(data)
    m = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ m).to_bytes(n, "little")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("audio", help="a WAV file (16-bit or 32-bit float), or - for raw s16le on stdin (with --raw-rate)")
    ap.add_argument("--raw-rate", type=int)
    ap.add_argument("--channels", type=int, default=1, help="channels of raw input")
    ap.add_argument("--block", type=float, default=0.1, help="seconds of audio per binary message")
    ap.add_argument("--realtime", action="store_true", help="send no faster than real time")
    ap.add_argument("--ongoing", action="store_true")
    ap.add_argument("--no-windows", action="store_true")
    ap.add_argument("--api-key", default=os.environ.get("CED_API_KEY"))
    for opt in ["window", "hop", "threshold", "release", "merge-gap", "min-duration", "fill"]:
        ap.add_argument("--" + opt, type=float)
    a = ap.parse_args()

    if a.audio == "-":
        rate, channels, width, fmt = a.raw_rate, a.channels, 2, "s16le"
        source = sys.stdin.buffer
    else:
        w = wave.open(a.audio)
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        if width not in (2, 4):
            sys.exit("send 16-bit PCM WAV (or raw input); this file has %d-byte samples" % width)
        fmt = "s16le" if width == 2 else "f32le"
        source = None
    start = {"type": "start", "sample_rate": rate, "format": fmt, "channels": channels,
             "ongoing": a.ongoing, "windows": not a.no_windows}
    for opt in ["window", "hop", "threshold", "release", "merge_gap", "min_duration", "fill"]:
        if getattr(a, opt) is not None:
            start[opt] = getattr(a, opt)
    ws = WebSocket(a.url, {"Authorization": "Bearer " + a.api_key} if a.api_key else None)
    ws.send_text(json.dumps(start))

    def feed():
        frame = width * channels
        per = max(1, int(a.block * rate)) * frame
        t0, sent = time.monotonic(), 0
        try:
            while True:
                data = source.read(per) if source else w.readframes(per // frame)
                if not data:
                    break
                ws.send_binary(data)
                sent += len(data) // frame
                if a.realtime:
                    time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
            ws.send_text(json.dumps({"type": "stop"}))
        except OSError:
            pass  # the server closed the connection (it says why in an error message)

    threading.Thread(target=feed, daemon=True).start()
    while True:
        kind, body = ws.receive()
        if kind == "close":
            break
        print(body, flush=True)
        if kind == "text" and json.loads(body).get("type") in ("done", "error"):
            ws.close()
            break


if __name__ == "__main__":
    main()

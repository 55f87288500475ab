#!/usr/bin/env python3
"""HTTP/1.1 clients for run.sh's `memory` mode (standard library only).

    python3 memory.py hold  --port P --path /api/bench [--token-file F] --count N --ready FILE
    python3 memory.py drive --port P --path /api/bench --tokens FILE --first A --last B

hold:  opens COUNT keep-alive connections one after the other, sends one request on each
       and reads the whole response, then keeps every socket open (idle) until SIGTERM or
       --hold-seconds. Once all are open it writes "opened=N ok=N failed=N" to READY
       (written to READY.tmp, then renamed, so the reader never sees half a line).
drive: sends lines A..B (1-based, inclusive) of the token file, each exactly once, over
       --connections keep-alive connections, and counts the answers. Prints
       "sent=N ok=N other=N errors=N seconds=S"; exit status 1 unless every answer was 200.

Every connect, read and loop is bounded (socket timeouts, --deadline).
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time


class HttpError(Exception):
    pass


def request_bytes(host: str, port: int, path: str, token: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: jobgate-load-memory"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def read_response(sock: socket.socket) -> tuple[int, bool]:
    """Reads one whole response; returns (status, server keeps the connection open)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise HttpError("connection closed before the response header")
        buf += chunk
        if len(buf) > 1 << 20:
            raise HttpError("response header too large")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    keep = headers.get("connection") != "close" and parts[0] == "HTTP/1.1"
    if "content-length" in headers:
        want = int(headers["content-length"])
        while len(body) < want:
            chunk = sock.recv(65536)
            if not chunk:
                raise HttpError("connection closed inside the body")
            body += chunk
    elif headers.get("transfer-encoding") == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise HttpError("connection closed inside a chunked body")
            body += chunk
    else:
        keep = False  # body delimited by the end of the connection: not a keep-alive answer
    return status, keep


def hold(args: argparse.Namespace) -> int:
    token = None
    if args.token_file:
        with open(args.token_file) as handle:
            token = handle.read().strip()
    request = request_bytes(args.host, args.port, args.path, token)
    socks: list[socket.socket] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ok = failed = 0
    deadline = time.monotonic() + args.deadline
    try:
        for _ in range(args.count):
            if stop.is_set() or time.monotonic() > deadline:
                break
            sock = None
            try:
                sock = socket.create_connection((args.host, args.port), timeout=5)
                sock.sendall(request)
                status, keep = read_response(sock)
            except (OSError, HttpError, ValueError) as error:
                failed += 1
                if failed <= 3:
                    print(f"memory.py hold: {error}", file=sys.stderr)
                if sock is not None:
                    sock.close()
                continue
            socks.append(sock)
            if status == 200 and keep:
                ok += 1
            else:
                failed += 1
        with open(args.ready + ".tmp", "w") as handle:
            handle.write(f"opened={len(socks)} ok={ok} failed={failed}\n")
        os.replace(args.ready + ".tmp", args.ready)
        # A sleep loop, not `stop.wait()`: a blocked Event.wait was seen to miss SIGTERM
        # (and its own timeout), leaving a holder with 1 000 sockets behind.
        end = time.monotonic() + args.hold_seconds
        while not stop.is_set() and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        for sock in socks:
            sock.close()
    return 0


def drive(args: argparse.Namespace) -> int:
    lock = threading.Lock()
    counts = {"sent": 0, "ok": 0, "other": 0, "errors": 0}
    others: dict[int, int] = {}
    deadline = time.monotonic() + args.deadline
    total = args.last - args.first + 1
    step = max(total // 10, 1)
    started = time.monotonic()

    handle = open(args.tokens)
    for _ in range(args.first - 1):
        if not handle.readline():
            break
    remaining = [total]

    def next_token() -> str | None:
        with lock:
            if remaining[0] <= 0 or time.monotonic() > deadline:
                return None
            line = handle.readline().strip()
            if not line:
                return None
            remaining[0] -= 1
            return line

    def record(key: str, status: int | None = None) -> None:
        with lock:
            counts["sent"] += 1
            counts[key] += 1
            if status is not None:
                others[status] = others.get(status, 0) + 1
            if counts["sent"] % step == 0:
                elapsed = time.monotonic() - started
                print(
                    f"  sent {counts['sent']:,} / {total:,} tokens ({elapsed:.0f} s, "
                    f"{counts['sent'] / max(elapsed, 1e-9):,.0f}/s, non-200 so far: {counts['other'] + counts['errors']})",
                    file=sys.stderr,
                )

    def worker() -> None:
        sock = None
        while True:
            token = next_token()
            if token is None:
                break
            request = request_bytes(args.host, args.port, args.path, token)
            for attempt in (1, 2):  # one reconnect if the kept-alive socket went away
                try:
                    if sock is None:
                        sock = socket.create_connection((args.host, args.port), timeout=10)
                    sock.sendall(request)
                    status, keep = read_response(sock)
                except (OSError, HttpError, ValueError) as error:
                    if sock is not None:
                        sock.close()
                        sock = None
                    if attempt == 2:
                        record("errors")
                        print(f"memory.py drive: {error}", file=sys.stderr)
                    continue
                if status == 200:
                    record("ok")
                else:
                    record("other", status)
                if not keep:
                    sock.close()
                    sock = None
                break
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 30)
    handle.close()
    seconds = time.monotonic() - started
    with lock:
        print(
            f"sent={counts['sent']} ok={counts['ok']} other={counts['other']} "
            f"errors={counts['errors']} seconds={seconds:.1f}"
            + ("".join(f" status_{code}={n}" for code, n in sorted(others.items())))
        )
        good = counts["ok"] == total and counts["sent"] == total
    return 0 if good else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("hold", "drive"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--path", default="/api/bench")
        p.add_argument("--deadline", type=float, default=60.0, help="seconds for the whole open/send phase")
    p_hold = sub.choices["hold"]
    p_hold.add_argument("--token-file", help="file with one token, sent as Authorization: Bearer")
    p_hold.add_argument("--count", type=int, default=1000)
    p_hold.add_argument("--ready", required=True)
    p_hold.add_argument("--hold-seconds", type=float, default=50.0)
    p_drive = sub.choices["drive"]
    p_drive.add_argument("--tokens", required=True)
    p_drive.add_argument("--first", type=int, default=1)
    p_drive.add_argument("--last", type=int, required=True)
    p_drive.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    return hold(args) if args.command == "hold" else drive(args)


if __name__ == "__main__":
    sys.exit(main())

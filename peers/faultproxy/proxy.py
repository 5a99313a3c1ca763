#!/usr/bin/env python3
"""faultproxy: an HTTP proxy that delays requests and injects the faults AWS clients meet.

Placed between a client and an HTTP peer (moto), it forwards every request unchanged
(the Host header too, so SigV4 signatures still verify upstream) and, for the requests
selected by --fail-first or --rate, injects the fault named by --mode:

  throttle            HTTP 400 with the AWS Query XML error `Throttling` (what IAM and STS
                      send), not forwarded
  throttle-429        HTTP 429 `Throttling` with a Retry-After header, not forwarded
  503                 HTTP 503 `ServiceUnavailable`, not forwarded
  slowdown            HTTP 503 with the S3 REST XML error `SlowDown` ("Please reduce your
                      request rate"), not forwarded: what S3 sends when a prefix is
                      throttled (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)
  reset               the connection is reset (RST) before anything is forwarded
  drop-after-forward  the request IS forwarded and applied upstream, then the connection
                      is closed without a response: the client cannot know it succeeded
  slow                the request IS forwarded and applied upstream at once, but the answer
                      is held back --slow-ms before it is sent: a client timeout after the
                      change was made
  lag                 eventual consistency: the change is acknowledged at once (a 200 with
                      the empty result IAM sends for UpdateAccessKey, PutUserPolicy, ...)
                      and forwarded upstream only --lag-ms later, so calls made meanwhile
                      still see the old state; IAM documents that "changes may take time to
                      become visible" (https://docs.aws.amazon.com/IAM/latest/UserGuide/
                      troubleshoot_general.html#troubleshoot_general_eventual-consistency).
                      Only for Query-protocol actions whose result is empty.
  none                no fault (only --delay-ms)

It prints the port it listens on, alone, as its first stdout line, then logs to stderr.
GET /__faultproxy/stats (never forwarded) returns JSON counters (client_gone: answers
the client closed its connection before they were written). Stdlib only, threaded
(one thread per client connection), binds 127.0.0.1.

--pass-first N lets N requests through first (a client's set-up calls), so a fault can be
aimed at one call. --match TEXT aims faults at the requests whose "METHOD PATH" line or body
contains TEXT (e.g. `Action=UpdateAccessKey`, `POST /credentials/revoke`): only those are
counted by --pass-first/--fail-first/--rate, and the stats count them (`matched`) and how
many of them reached upstream (`matched_forwarded`): the number of change requests the peer
really received.

Example:
  proxy.py --listen-port 0 --upstream http://127.0.0.1:5000 --mode throttle --fail-first 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("none", "throttle", "throttle-429", "503", "slowdown", "reset", "drop-after-forward", "slow", "lag")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


def query_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>faultproxy</RequestId></ErrorResponse>"
    ).encode()


class State:
    """Which requests fail, and counters. Shared by all handler threads."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.requests = 0
        self.faults = 0
        self.forwarded = 0
        self.matched = 0
        self.matched_forwarded = 0
        self.client_gone = 0

    def selects(self, command: str, path: str, body: bytes) -> bool:
        needle = self.args.match
        if needle is None:
            return True
        text = f"{command} {path}\n".encode() + body
        hit = needle.encode() in text
        if hit:
            with self.lock:
                self.matched += 1
        return hit

    def next_is_fault(self) -> bool:
        with self.lock:
            self.requests += 1
            n = self.requests
            if self.args.mode == "none":
                return False
            if n <= self.args.pass_first:
                return False
            n -= self.args.pass_first
            fault = n <= self.args.fail_first or (
                self.args.rate > 0 and self.rng.random() < self.args.rate
            )
            if fault:
                self.faults += 1
            return fault

    def count_forwarded(self, selected: bool) -> None:
        with self.lock:
            self.forwarded += 1
            if selected and self.args.match is not None:
                self.matched_forwarded += 1

    def stats(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "faults": self.faults,
                "forwarded": self.forwarded,
                "matched": self.matched,
                "matched_forwarded": self.matched_forwarded,
                "client_gone": self.client_gone,
                "mode": self.args.mode,
            }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"
    # TCP_NODELAY on each client connection. A reply's headers and body leave in two writes
    # (end_headers() flushes the headers, then the body); with Nagle's algorithm on, the
    # body waits until the client ACKs the headers, and a client on a kept-alive
    # connection delays that ACK (Linux: up to 40 ms). Measured: one round trip behind
    # --delay-ms 50 took 96 ms instead of 54 ms, and every WAN figure in BENCHMARKS.md
    # before 2026-12-01 20:40 UTC carried it. The proxy adds the delay it is given and
    # nothing else; scripts/bench prints the round trip it measures through the proxy.
    disable_nagle_algorithm = True
    state: State  # set on the class before serving
    upstream: urllib.parse.SplitResult

    def log_message(self, fmt: str, *args) -> None:  # noqa: D401 - stdlib signature
        if not self.state.args.quiet:
            sys.stderr.write("faultproxy: " + (fmt % args) + "\n")

    # One upstream connection per client connection (this handler lives as long as it).
    def _upstream_conn(self) -> http.client.HTTPConnection:
        conn = getattr(self, "_conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(
                self.upstream.hostname, self.upstream.port, timeout=self.state.args.upstream_timeout
            )
            self._conn = conn
        return conn

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        try:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes, selected: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in (1, 2):
            conn = self._upstream_conn()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                # A stale keep-alive connection to upstream: reconnect once.
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        self.state.count_forwarded(selected)
        out = [
            (k, v)
            for k, v in resp.getheaders()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
        ]
        return resp.status, out, data

    def _handle(self) -> None:
        if self.path == "/__faultproxy/stats":
            self._read_body()
            body = json.dumps(self.state.stats()).encode()
            self._reply(200, [("Content-Type", "application/json")], body)
            return
        body = self._read_body()
        args = self.state.args
        if args.delay_ms > 0:
            time.sleep(args.delay_ms / 1000.0)
        selected = self.state.selects(self.command, self.path, body)
        if selected and self.state.next_is_fault():
            mode = args.mode
            self.log_message("injecting %s into %s %s", mode, self.command, self.path)
            if mode == "throttle":
                self._reply(400, [("Content-Type", "text/xml")], query_error("Throttling", "Rate exceeded"))
                return
            if mode == "throttle-429":
                self._reply(
                    429,
                    [("Content-Type", "text/xml"), ("Retry-After", str(args.retry_after))],
                    query_error("Throttling", "Rate exceeded"),
                )
                return
            if mode == "503":
                self._reply(
                    503,
                    [("Content-Type", "text/xml")],
                    query_error("ServiceUnavailable", "Service is unavailable"),
                )
                return
            if mode == "slowdown":
                self._reply(
                    503,
                    [("Content-Type", "application/xml")],
                    (
                        '<?xml version="1.0" encoding="UTF-8"?>\n'
                        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
                        "<RequestId>faultproxy</RequestId></Error>"
                    ).encode(),
                )
                return
            if mode == "reset":
                self._reset()
                return
            if mode == "drop-after-forward":
                try:
                    self._forward(body, selected)
                finally:
                    self._reset()
                return
            if mode == "lag":
                action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", ["Unknown"])[0]
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                command, path = self.command, self.path

                def apply_later() -> None:
                    time.sleep(args.lag_ms / 1000.0)
                    conn = http.client.HTTPConnection(
                        self.upstream.hostname, self.upstream.port, timeout=args.upstream_timeout
                    )
                    try:
                        conn.request(command, path, body=body, headers=headers)
                        conn.getresponse().read()
                        self.state.count_forwarded(True)
                    finally:
                        conn.close()

                threading.Thread(target=apply_later, daemon=True).start()
                ack = (
                    f'<{action}Response xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
                    "<ResponseMetadata><RequestId>faultproxy-lag</RequestId></ResponseMetadata>"
                    f"</{action}Response>"
                ).encode()
                self._reply(200, [("Content-Type", "text/xml")], ack)
                return
            if mode == "slow":
                status, headers, data = self._forward(body, selected)
                time.sleep(args.slow_ms / 1000.0)
                try:
                    self._reply(status, headers, data)
                except OSError:
                    pass  # the client gave up waiting, as intended
                return
        try:
            status, headers, data = self._forward(body, selected)
        except Exception as exc:  # upstream down: tell the client plainly
            msg = f"faultproxy: upstream unreachable: {exc.__class__.__name__}\n".encode()
            self._reply(502, [("Content-Type", "text/plain")], msg)
            return
        try:
            self._reply(status, headers, data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (killed, timed out)

    def _serve(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            # The client closed the connection before its answer was written (it gave
            # up on the request, or was killed): nothing to answer, and no traceback.
            self.close_connection = True
            with self.state.lock:
                self.state.client_gone += 1

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_DELETE = _serve
    do_HEAD = _serve
    do_PATCH = _serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="HTTP proxy that delays requests and injects AWS-style faults",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    p.add_argument("--delay-ms", type=int, default=0, help="fixed delay added to every request")
    p.add_argument("--mode", choices=MODES, default="none", help="the fault to inject")
    p.add_argument(
        "--pass-first", type=int, default=0,
        help="let the first N requests through untouched before faults are counted",
    )
    p.add_argument("--fail-first", type=int, default=0, help="inject into the first N requests (after --pass-first)")
    p.add_argument(
        "--rate", "--throttle-rate", dest="rate", type=float, default=0.0,
        help="inject into this fraction (0..1) of requests, after --fail-first",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for --rate (reproducible runs)")
    p.add_argument(
        "--match", default=None,
        help="aim faults only at requests whose `METHOD PATH` line or body contains this text",
    )
    p.add_argument("--slow-ms", type=int, default=5000, help="how long `slow` holds an answer back")
    p.add_argument("--lag-ms", type=int, default=3000, help="how long `lag` holds a change back")
    p.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds (throttle-429)")
    p.add_argument("--upstream-timeout", type=float, default=30.0)
    p.add_argument("--quiet", action="store_true", help="log nothing (only the port is printed)")
    args = p.parse_args(argv)
    if not 0.0 <= args.rate <= 1.0:
        p.error(f"--rate must be within 0..1, not {args.rate}")
    up = urllib.parse.urlsplit(args.upstream)
    if up.scheme != "http" or not up.hostname or not up.port:
        p.error(f"--upstream must look like http://127.0.0.1:PORT, not `{args.upstream}`")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    Handler.state = State(args)
    Handler.upstream = urllib.parse.urlsplit(args.upstream)
    server = ThreadingHTTPServer(("127.0.0.1", args.listen_port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    if not args.quiet:
        sys.stderr.write(
            f"faultproxy: 127.0.0.1:{server.server_address[1]} -> {args.upstream} "
            f"mode={args.mode} pass_first={args.pass_first} fail_first={args.fail_first} "
            f"rate={args.rate} delay_ms={args.delay_ms}\n"
        )
        sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fixed-rate (open-loop) HTTP/1.1 load generator, Python 3.11 standard library only.

Debian 12 ships neither wrk2 nor oha, and wrk / hey are closed-loop: a slow response
delays the next request, so they under-report tail latency ("coordinated omission").
This tool sends request i at the *intended* time  start + i / rate  whatever happened
before, over a pool of keep-alive connections (one request in flight per connection,
no pipelining). A request that finds no idle connection waits in a queue, and every
latency is measured from its intended send time, so queueing caused by a slow server
shows up in the percentiles instead of silently lowering the offered rate.

The event loop uses select(2) rather than epoll because Python's epoll wrapper rounds
timeouts up to whole milliseconds, which would add up to 1 ms of scheduling lag to
every request at these rates; select(2) takes microseconds. That limits the pool to
fds < 1024, i.e. a few hundred connections, far more than a fixed-rate run needs.

Only loopback targets (127.0.0.0/8, ::1) are accepted. Every run is bounded in time:
the schedule lasts --duration seconds, then in-flight requests get --drain seconds.

Output: one "key=value" per line on stdout (easy to read from a shell script), e.g.
    requests=20000 errors=0 incomplete=0 achieved_rps=1999.9
    p50_ms=0.210 p90_ms=... p99_ms=0.480 p999_ms=... max_ms=...
    send_lag_p99_ms=0.090   (how late the generator itself sent: its own noise floor)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import selectors
import socket
import sys
import time
import urllib.parse

perf = time.perf_counter


def parse_duration(text: str) -> float:
    """'10', '10s', '1.5s', '2m', '500ms' -> seconds."""
    t = text.strip().lower()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix):
            return float(t[: -len(suffix)]) * mult
    return float(t)


class Conn(asyncio.Protocol):
    """One keep-alive connection; parses HTTP/1.1 responses (Content-Length or chunked)."""

    def __init__(self, gen: "Generator"):
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.reset_response()
        self.intended = 0.0  # intended send time of the request in flight
        self.busy = False

    def reset_response(self) -> None:
        self.state = "head"  # head | body | chunk_size | chunk_data | chunk_crlf | chunk_trailer
        self.status = 0
        self.remaining = 0
        self.body_len = 0
        self.close_after = False

    # asyncio callbacks -------------------------------------------------
    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):  # type: ignore[override]
        self.closed = True
        self.gen.on_lost(self)

    def data_received(self, data: bytes) -> None:  # type: ignore[override]
        if not self.busy:
            # Unsolicited bytes: protocol error, drop the connection.
            self.gen.errors_proto += 1
            self.transport.close()
            return
        if self.state == "body" and not self.buf:
            # Fast path for Content-Length bodies: count bytes, never copy them.
            n = len(data)
            if n <= self.remaining:
                self.remaining -= n
                self.body_len += n
                if self.remaining == 0:
                    self.finish()
                return
        self.buf += data
        self.parse()

    # parsing -----------------------------------------------------------
    def parse(self) -> None:
        buf = self.buf
        while self.busy and buf:
            if self.state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        self.protocol_error()
                    return
                head = bytes(buf[:end]).decode("latin-1")
                del buf[: end + 4]
                lines = head.split("\r\n")
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                    self.protocol_error()
                    return
                self.status = int(parts[1])
                length = None
                chunked = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    value = value.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "transfer-encoding" and "chunked" in value:
                        chunked = True
                    elif name == "connection" and "close" in value:
                        self.close_after = True
                if parts[0] == "HTTP/1.0":
                    self.close_after = True
                if chunked:
                    self.state = "chunk_size"
                elif length is not None:
                    self.remaining = length
                    self.state = "body"
                    if length == 0:
                        self.finish()
                else:
                    # Body delimited by close: not expected from any target here.
                    self.protocol_error()
                    return
            elif self.state == "body":
                n = min(len(buf), self.remaining)
                del buf[:n]
                self.remaining -= n
                self.body_len += n
                if self.remaining == 0:
                    self.finish()
            elif self.state == "chunk_size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0].strip() or b"0", 16)
                del buf[: end + 2]
                if size == 0:
                    self.state = "chunk_trailer"
                else:
                    self.remaining = size
                    self.state = "chunk_data"
            elif self.state == "chunk_data":
                n = min(len(buf), self.remaining)
                del buf[:n]
                self.remaining -= n
                self.body_len += n
                if self.remaining == 0:
                    self.state = "chunk_crlf"
            elif self.state == "chunk_crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self.state = "chunk_size"
            elif self.state == "chunk_trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if not line:
                    self.finish()

    def protocol_error(self) -> None:
        self.gen.errors_proto += 1
        self.busy = False
        self.transport.close()

    def finish(self) -> None:
        gen = self.gen
        done = perf()
        self.busy = False
        gen.inflight -= 1
        ok = 200 <= self.status < 300
        if ok and gen.expect_bytes is not None and self.body_len != gen.expect_bytes:
            ok = False
            gen.errors_size += 1
        elif not ok:
            gen.errors_status += 1
        if ok:
            gen.completed += 1
            gen.bytes += self.body_len
            if self.intended >= gen.record_from:
                gen.latencies.append(done - self.intended)
        close = self.close_after
        self.reset_response()
        if close:
            self.transport.close()  # connection_lost() reconnects
        else:
            gen.idle.append(self)
            gen.dispatch()

    def send(self, intended: float) -> None:
        self.busy = True
        self.intended = intended
        self.transport.write(self.gen.request)


class Generator:
    def __init__(self, args, host: str, port: int, path: str, hostport: str):
        self.args = args
        self.host, self.port = host, port
        self.rate = args.rate
        self.expect_bytes = args.expect_bytes
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: concierge-bench-loadgen\r\n"
            f"Accept: text/html\r\nAccept-Encoding: identity\r\n\r\n"
        ).encode()
        self.idle: collections.deque[Conn] = collections.deque()
        self.pending: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []
        self.send_lag: list[float] = []
        self.completed = 0
        self.bytes = 0
        self.inflight = 0
        self.errors_status = 0
        self.errors_size = 0
        self.errors_proto = 0
        self.errors_conn = 0
        self.reconnects = 0
        self.max_pending = 0
        self.record_from = 0.0
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def connect(self) -> Conn:
        _, proto = await asyncio.wait_for(
            self.loop.create_connection(lambda: Conn(self), self.host, self.port), timeout=5
        )
        return proto

    def on_lost(self, conn: Conn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        if conn.busy:
            conn.busy = False
            self.inflight -= 1
            self.errors_conn += 1
        if not self.stopping and self.reconnects < self.args.max_reconnects:
            self.reconnects += 1
            self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            conn = await self.connect()
        except Exception:
            self.errors_conn += 1
            return
        self.idle.append(conn)
        self.dispatch()

    def dispatch(self) -> None:
        pending, idle = self.pending, self.idle
        while pending and idle:
            conn = idle.popleft()  # FIFO: rotate over the whole pool
            intended = pending.popleft()
            self.inflight += 1
            self.send_lag.append(perf() - intended)
            conn.send(intended)

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        conns = await asyncio.gather(*(self.connect() for _ in range(self.args.connections)))
        self.idle.extend(conns)
        duration = self.args.duration
        total = int(round(self.rate * duration))
        interval = 1.0 / self.rate
        start = perf() + 0.05
        self.record_from = start + self.args.warmup
        i = 0
        hard_end = start + duration + 5.0  # safety bound for the schedule loop
        while i < total:
            now = perf()
            if now > hard_end:
                break
            while i < total and start + i * interval <= now:
                self.pending.append(start + i * interval)
                i += 1
            if len(self.pending) > self.max_pending:
                self.max_pending = len(self.pending)
            self.dispatch()
            if i < total:
                delay = start + i * interval - perf()
                await asyncio.sleep(delay if delay > 0 else 0)
        self.scheduled = i
        self.schedule_elapsed = perf() - start
        # Drain: give in-flight and queued requests a bounded time to finish.
        deadline = perf() + self.args.drain
        while (self.inflight or self.pending) and perf() < deadline:
            await asyncio.sleep(0.005)
        self.stopping = True
        self.incomplete = self.inflight + len(self.pending)
        self.elapsed = perf() - start
        for c in conns:
            if c.transport is not None:
                c.transport.close()
        for c in list(self.idle):
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0.01)

    def report(self) -> str:
        lat = sorted(self.latencies)
        lag = sorted(self.send_lag)

        def pct(values: list[float], p: float) -> float:
            if not values:
                return float("nan")
            k = min(len(values) - 1, max(0, int(-(-p * len(values) // 100)) - 1))  # nearest rank
            return values[k] * 1000.0

        errors = self.errors_status + self.errors_size + self.errors_proto + self.errors_conn
        out = {
            "target_rate": f"{self.rate:g}",
            "scheduled": self.scheduled,
            "requests": self.completed,
            "errors": errors,
            "errors_status": self.errors_status,
            "errors_size": self.errors_size,
            "errors_proto": self.errors_proto,
            "errors_conn": self.errors_conn,
            "incomplete": self.incomplete,
            "reconnects": self.reconnects,
            "max_queue": self.max_pending,
            "duration_s": f"{self.schedule_elapsed:.3f}",
            "achieved_rps": f"{self.completed / self.elapsed:.1f}" if self.elapsed > 0 else "0",
            "bytes": self.bytes,
            "samples": len(lat),
            "p50_ms": f"{pct(lat, 50):.3f}",
            "p90_ms": f"{pct(lat, 90):.3f}",
            "p99_ms": f"{pct(lat, 99):.3f}",
            "p999_ms": f"{pct(lat, 99.9):.3f}",
            "max_ms": f"{(lat[-1] * 1000.0 if lat else float('nan')):.3f}",
            "send_lag_p50_ms": f"{pct(lag, 50):.3f}",
            "send_lag_p99_ms": f"{pct(lag, 99):.3f}",
        }
        return "\n".join(f"{k}={v}" for k, v in out.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="http://127.x.x.x:PORT/path (loopback only)")
    ap.add_argument("-R", "--rate", type=float, required=True, help="requests per second")
    ap.add_argument("-d", "--duration", type=parse_duration, default=10.0, help="e.g. 10s")
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("--warmup", type=parse_duration, default=0.0,
                    help="seconds at the start whose latencies are not recorded (still counted)")
    ap.add_argument("--drain", type=parse_duration, default=5.0,
                    help="max seconds to wait for outstanding requests after the schedule")
    ap.add_argument("--expect-bytes", type=int, default=None,
                    help="count a 2xx response whose body has another length as an error")
    ap.add_argument("--max-reconnects", type=int, default=1000)
    args = ap.parse_args()

    u = urllib.parse.urlsplit(args.url)
    if u.scheme != "http" or not u.hostname:
        ap.error("only http:// URLs are supported")
    host = u.hostname
    try:
        addr = ipaddress.ip_address(socket.gethostbyname(host) if host != "::1" else host)
    except (OSError, ValueError):
        ap.error(f"cannot resolve {host}")
    if not addr.is_loopback:
        ap.error(f"refusing non-loopback target {addr}: load tests stay on 127.0.0.0/8")
    if not (0 < args.rate <= 200000):
        ap.error("rate must be in (0, 200000]")
    if not (1 <= args.connections <= 500):
        ap.error("connections must be in [1, 500] (select(2) fd limit)")
    if not (0 < args.duration <= 3600):
        ap.error("duration must be in (0, 3600] seconds")
    port = u.port or 80
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    hostport = u.netloc

    gen = Generator(args, str(addr), port, path, hostport)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(gen.run(), args.duration + args.drain + 30))
    except (OSError, asyncio.TimeoutError) as e:
        print(f"loadgen: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    finally:
        loop.close()
    print(gen.report())
    return 0 if gen.completed else 1


if __name__ == "__main__":
    sys.exit(main())

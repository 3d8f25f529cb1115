"""Prometheus metrics: what moved, what failed, what it cost.

One registry per process (:data:`REGISTRY`), always counting (a counter
increment is a lock and an add), exposed only when asked: ``--metrics-port``
serves ``/metrics`` while a command runs, ``--pushgateway`` pushes at the end
and every ``--push-interval`` seconds. Names follow the Prometheus
conventions (``_total`` counters, base units: bytes, seconds).

Labels: ``direction`` is ``<source scheme>_to_<destination scheme>``
(``local`` for files), ``flow`` the flow name under ``s3ferry run`` and the
command name otherwise (set through :data:`FLOW`, a context variable that
asyncio tasks inherit).
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from s3ferry.observe.progress import ProgressListener
from s3ferry.observe.resources import disk_writes, peak_rss

log = logging.getLogger("s3ferry")

FLOW: contextvars.ContextVar[str] = contextvars.ContextVar("s3ferry_flow", default="cp")

REGISTRY = CollectorRegistry(auto_describe=True)

BYTES = Counter("s3ferry_transferred_bytes", "Payload bytes stored at the destination.",
                ["direction", "flow"], registry=REGISTRY)
PARTS = Counter("s3ferry_parts", "Parts by result (stored, failed).", ["result"], registry=REGISTRY)
FILES = Counter("s3ferry_files", "Files by result (copied, failed, skipped, healed, archived, deleted).",
                ["result", "flow"], registry=REGISTRY)
RETRIES = Counter("s3ferry_retries", "Retried operations by reason (throttled, server_error, connection, other).",
                  ["reason"], registry=REGISTRY)
DURATION = Histogram("s3ferry_transfer_duration_seconds", "Wall time of one file's transfer.", ["direction"],
                     buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
                     registry=REGISTRY)
QUEUE = Gauge("s3ferry_push_retry_queue_depth", "Objects waiting in a push flow's retry queue.", ["flow"],
              registry=REGISTRY)
LAST_SUCCESS = Gauge("s3ferry_flow_last_success_timestamp_seconds",
                     "Unix time of the last run of a flow that ended without failures.", ["flow"], registry=REGISTRY)


def direction(source_scheme: str, dest_scheme: str) -> str:
    def name(scheme: str) -> str:
        return {"file": "local", "https": "http", "ftps": "ftp"}.get(scheme, scheme)

    return f"{name(source_scheme)}_to_{name(dest_scheme)}"


def retry_reason(code: str | None, message: str) -> str:
    if code in ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"):
        return "throttled"
    server = code is not None and code.isdigit() and code.startswith("5")
    if server or code in ("InternalError", "ServiceUnavailable"):
        return "server_error"
    if "connection" in message.lower() or "lost" in message.lower():
        return "connection"
    return "other"


class _Throughput:
    """Bytes per second over the last few seconds (samples of the running total)."""

    WINDOW = 5.0

    def __init__(self) -> None:
        self._total = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, nbytes: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._total += nbytes
            if not self._samples or now - self._samples[-1][0] >= 0.25:
                self._samples.append((now, self._total))
            while self._samples and now - self._samples[0][0] > self.WINDOW:
                self._samples.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            if not self._samples:
                return 0.0
            start_time, start_total = self._samples[0]
            span = now - start_time
            return (self._total - start_total) / span if span > 0.5 else 0.0


THROUGHPUT = _Throughput()
_DISK_AT_START = disk_writes()


class _ProcessCollector(Collector):
    """Read at scrape time: throughput, memory, and the bytes this process wrote to disk."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("s3ferry_throughput_bytes_per_second",
                                "Payload bytes per second over the last 5 seconds.", value=THROUGHPUT.rate())
        yield GaugeMetricFamily("s3ferry_resident_memory_bytes", "Resident set size of the process.",
                                value=_rss())
        yield GaugeMetricFamily("s3ferry_peak_resident_memory_bytes", "Peak resident set size of the process.",
                                value=peak_rss())
        yield GaugeMetricFamily("s3ferry_disk_written_bytes",
                                "Bytes this process caused to be written to local storage since it started "
                                "(the zero-disk proof: only the resume journal).",
                                value=disk_writes() - _DISK_AT_START)


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


REGISTRY.register(_ProcessCollector())


class Metered:
    """A progress listener that also counts bytes (wraps the caller's listener, if any)."""

    def __init__(self, inner: ProgressListener | None, direction_label: str) -> None:
        self._inner = inner
        self._bytes = BYTES.labels(direction_label, FLOW.get())

    def started(self, name: str, total: int) -> None:
        if self._inner is not None:
            self._inner.started(name, total)

    def advanced(self, nbytes: int) -> None:
        self._bytes.inc(nbytes)
        THROUGHPUT.add(nbytes)
        if self._inner is not None:
            self._inner.advanced(nbytes)

    def finished(self) -> None:
        if self._inner is not None:
            self._inner.finished()


# -- exposition -------------------------------------------------------------------

def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Serve /metrics on ``addr:port`` from a daemon thread (for as long as the process runs)."""
    from prometheus_client import start_http_server

    from s3ferry.core.errors import UsageError

    try:
        start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {addr}:{port}: {exc.strerror}") from exc


class Pusher:
    """Pushes the registry to a Pushgateway every ``interval`` seconds and once at the end."""

    def __init__(self, url: str, interval: float, job: str = "s3ferry") -> None:
        self.url, self.interval, self.job = url, interval, job
        # One group per host and flow: a push replaces its whole group, so two cron lines
        # (say a pull and a push) on one host must not overwrite each other's series.
        # One group per host and command. Not "flow": a grouping label replaces the series' own label of that
        # name, and under `run` each series carries its own flow's name, which the alerts need.
        self.grouping = {"instance": socket.gethostname(), "command": FLOW.get()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="s3ferry-pushgateway", daemon=True)

    def push(self) -> None:
        from prometheus_client import push_to_gateway

        from s3ferry.core.urls import redact

        try:
            push_to_gateway(self.url, job=self.job, registry=REGISTRY, grouping_key=self.grouping, timeout=10)
        except OSError as exc:  # urllib errors are OSErrors: a metrics outage must not fail a transfer
            log.warning("could not push metrics to %s: %s", redact(self.url), exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def __enter__(self) -> Pusher:
        self.grouping["command"] = FLOW.get()  # set by the command by now
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self.push()

"""Crash-and-resume helpers for copies to S3: run s3ferry through a fresh :class:`S3FaultProxy`, SIGKILL it
at a chosen moment, then run it again and count the payload bytes S3 accepted (a re-run must send exactly
what S3 did not already hold)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import S3FERRY, run_cli, uploads_for


def start_via(args: list[str], endpoint: str) -> subprocess.Popen[str]:
    """Start s3ferry with S3 at ``endpoint`` (a fault proxy's URL)."""
    return subprocess.Popen([S3FERRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AWS_ENDPOINT_URL_S3": endpoint}, stdin=subprocess.DEVNULL)


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"s3ferry ended before the kill point: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("kill point not reached in time")
        time.sleep(0.002)


def kill_at(s3: testbed.SeaweedServer, args: list[str], when: Callable[[S3FaultProxy], bool],
            hold_complete: bool = False, forward_held_complete: bool = False) -> None:
    """Run s3ferry through a fresh proxy and SIGKILL it when ``when(proxy)`` becomes true."""
    with S3FaultProxy(s3.s3_port) as proxy:
        if hold_complete:
            proxy.hold_complete = threading.Event()
        proc = start_via(args, proxy.url)
        wait_until(lambda: when(proxy), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if forward_held_complete:  # S3 got the request and completes it, but nobody hears back
            assert proxy.hold_complete is not None
            proxy.hold_complete.set()
            deadline = time.monotonic() + 30
            while proxy.count("CompleteMultipartUpload") == 0 and time.monotonic() < deadline:
                time.sleep(0.01)


def stored_bytes(s3: testbed.SeaweedServer, bucket: str, key: str) -> int:
    """The bytes of the parts S3 holds for unfinished uploads of ``key``."""
    client = s3.client()
    total = 0
    for up in uploads_for(s3, bucket, key):
        parts = client.list_parts(Bucket=bucket, Key=key, UploadId=up["UploadId"]).get("Parts", [])
        total += sum(p["Size"] for p in parts)
    return total


def rerun(s3: testbed.SeaweedServer, args: list[str]) -> tuple[dict[str, object], int, str]:
    """Run ``args`` to success through a fresh proxy: its JSON report, the upload bytes S3 accepted, stderr."""
    with S3FaultProxy(s3.s3_port) as proxy:
        result = run_cli(*args, env={"AWS_ENDPOINT_URL_S3": proxy.url})
        assert result.code == 0, result.stderr
        return json.loads(result.stdout), proxy.upload_bytes, result.stderr

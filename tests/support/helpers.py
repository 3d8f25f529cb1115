"""Plain helpers of the tests (no fixtures): files of random bytes, what the test S3 server holds,
running the installed ``s3ferry`` as a user would and reading what it showed, hostile names."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3ferry.demo import servers as testbed

MiB = 1024 * 1024
#: the installed command, next to this Python (what a user runs)
S3FERRY = str(Path(sys.executable).with_name("s3ferry"))


def empty_and_delete(client: object, name: str) -> None:
    """Remove a test bucket: SeaweedFS gives each bucket its own volumes, a finite supply."""
    for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):  # type: ignore[attr-defined]
        client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])  # type: ignore[attr-defined]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)  # type: ignore[attr-defined]
    for page in pages:
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])  # type: ignore[attr-defined]
    client.delete_bucket(Bucket=name)  # type: ignore[attr-defined]


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes; return their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(8 * MiB, left))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def object_sha256(s3: testbed.SeaweedServer, bucket: str, key: str) -> str:
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        digest.update(chunk)
    return digest.hexdigest()


def uploads_for(s3: testbed.SeaweedServer, bucket: str, key: str | None = None) -> list[dict[str, object]]:
    found = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [u for u in found if key is None or u["Key"] == key]


def object_exists(s3: testbed.SeaweedServer, bucket: str, key: str) -> bool:
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=key)
    return any(o["Key"] == key for o in listing.get("Contents", []))


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """Run the installed ``s3ferry`` as a user would (a separate process)."""
    script = Path(sys.executable).with_name("s3ferry")
    proc = subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def sftp_flags(ssh: testbed.SshServer) -> list[str]:
    return ["--identity", str(ssh.user_key), "--known-hosts", str(ssh.known_hosts)]


def shown(run: Run) -> str:
    return run.stdout + run.stderr


def key_forms(key: bytes) -> list[str]:
    """How botocore and Python print an SSE-C key: base64 (header), base64 MD5 (header), repr, hex."""
    return [base64.b64encode(key).decode(), base64.b64encode(hashlib.md5(key).digest()).decode(),
            repr(key)[2:-1], key.hex()]


#: each name is a trap for one reading or another: a query, a fragment, a percent escape (valid,
#: invalid), a form-encoded space, and the three wildcards
HOSTILE = ("q?mark.bin", "a%41.bin", "100%.csv", "hash#tag.bin", "sp ace.bin", "star*.bin", "br[1].bin",
           "plus+sign.bin")


def assert_one_line_error(stderr: str, *needles: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {stderr!r}"
    assert lines[0].startswith("s3ferry: error: ")
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def pull_flow(name: str, source: str, bucket: str, endpoint: str, ssh: testbed.SshServer | None = None,
              every: str = "1h") -> str:
    keys = (f'identity = "{ssh.user_key}"\nknown_hosts = "{ssh.known_hosts}"\n' if ssh else "")
    return (f'[flows.{name}]\nkind = "pull"\nsource = "{source}"\ndestination = "s3://{bucket}/in/"\n'
            f'every = "{every}"\nendpoint_url = "{endpoint}"\n{keys}')


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class LineReader:
    """Lines of a child's stream, read by a thread, so the test can wait for them with a deadline."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.seen.append(line)
                self.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()

    def next_json(self, timeout: float) -> dict:
        return json.loads(self.lines.get(timeout=timeout))

    def next_report(self, timeout: float) -> dict:
        """The next JSON line of a run that ran (skipped times are passed over)."""
        for _ in range(100):
            if (found := self.next_json(timeout))["status"] != "skipped":
                return found
        raise AssertionError(f"only skipped runs: {self.seen[-3:]}")

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {timeout} s: {self.seen}")


def start_run(*args: str) -> subprocess.Popen[str]:
    script = Path(sys.executable).with_name("s3ferry")
    return subprocess.Popen([str(script), "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.s3ferry-*.tmp"))


def journaled_parts(state: Path) -> int:
    db = state / "journal.sqlite3"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=0.1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0])
    except sqlite3.OperationalError:  # created but not yet set up, or locked for a moment
        return 0


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([S3FERRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ), stdin=subprocess.DEVNULL)


def stop_after_journaled_parts(proc: subprocess.Popen[str], state: Path, sig: signal.Signals,
                               parts: int = 2) -> tuple[str, str]:
    """Send ``sig`` once the journal holds ``parts`` parts (the copy must be slowed with --bwlimit)."""
    deadline = time.monotonic() + 60
    while journaled_parts(state) < parts:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no part was journaled in time"
        time.sleep(0.02)
    proc.send_signal(sig)
    return proc.communicate(timeout=60)


# -- objects written the way other tools write them --

def plain_client(s3: testbed.SeaweedServer, checksums: bool = True) -> Any:
    """A boto3 client as other tools use it; ``checksums=False``: no checksum at all (only the MD5 ETag)."""
    import boto3
    from botocore.config import Config

    mode = "when_supported" if checksums else "when_required"
    return boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
                        aws_secret_access_key=s3.secret_key, region_name="us-east-1",
                        config=Config(request_checksum_calculation=mode))


def put_multipart(client: Any, bucket: str, key: str, data: bytes, part: int, algorithm: str | None,
                  kind: str | None) -> None:
    create: dict[str, Any] = {"ChecksumAlgorithm": algorithm, "ChecksumType": kind} if algorithm else {}
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, len(data), part), start=1):
        extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
        answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                    Body=data[offset:offset + part], **extra)
        entry = {"PartNumber": number, "ETag": answer["ETag"]}
        if algorithm:
            entry[f"Checksum{algorithm}"] = answer[f"Checksum{algorithm}"]
        parts.append(entry)
    complete: dict[str, Any] = {"ChecksumType": kind} if kind == "FULL_OBJECT" else {}
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
                                     **complete)

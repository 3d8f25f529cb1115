"""``s3ferry serve`` with its event intake (``[serve.events]``): a real SeaweedFS whose filer webhook posts to
the running service, the object pushed to the real sshd at once; the intake checks its own senders (the
serve token by default), a repeated event delivers nothing more, and what was put while serve was down is
delivered by the catch-up run at start."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.events import seaweed_with_webhook
from support.serve import Served, new_token, push_flow, start_serve


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[testbed.SeaweedServer, int, str, Path]]:
    """A SeaweedFS whose filer posts to port ``port`` with ``token``: the serve token of the tests below."""
    base = tmp_path_factory.mktemp("serve-events")
    token, token_file = new_token(base)
    port = testbed.free_port()
    with seaweed_with_webhook(base, port, token=token) as server:
        yield server, port, token, token_file


def arrival(path: Path, data: bytes, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes() == data:
            return time.monotonic()
        time.sleep(0.01)
    raise AssertionError(f"{path.name} did not arrive within {timeout} s")


def seaweedfs_event(bucket: str, key: str) -> dict[str, object]:
    """A filer webhook event as SeaweedFS 4.48 posts it (the fields the intake reads)."""
    return {"event_type": "create", "key": f"/buckets/{bucket}/{key}",
            "message": {"new_entry": {"name": key.rsplit("/", 1)[-1], "is_directory": False,
                                      "attributes": {"file_size": 3}},
                        "new_parent_path": f"/buckets/{bucket}/{key.rsplit('/', 1)[0]}"}}


def test_an_object_put_is_on_the_sftp_server_within_two_seconds(
        tmp_path: Path, ssh: testbed.SshServer, webhook: tuple[testbed.SeaweedServer, int, str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, port, token, token_file = webhook
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client = server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="out/early.csv", Body=b"put while serve was down")
    inbox = ssh.root / f"serve-events-{bucket}"
    flows = tmp_path / "flows.toml"
    # hourly: only the catch-up run at start and the events deliver within this test
    flows.write_text(push_flow("outbox", bucket, server.endpoint, ssh, inbox, every="1h") + "\n[serve.events]\n")
    served: Served = start_serve(flows, tmp_path / "state", token, token_file, port=port)
    try:
        arrival(inbox / "early.csv", b"put while serve was down", timeout=30)  # the catch-up run
        body = bytes(range(256)) * 4096  # 1 MiB
        put = time.monotonic()
        client.put_object(Bucket=bucket, Key="out/report.csv", Body=body)
        delay = arrival(inbox / "report.csv", body, timeout=10) - put
        print(f"PutObject -> file on the SFTP server through serve: {delay:.2f} s")
        assert delay < 2.0
        served.wait(lambda: any(d["path"].endswith("report.csv") for d in
                                served.get("/api/v1/deliveries")["deliveries"]), timeout=10, note="delivery listed")

        # the intake checks its own senders: no token 401, a wrong one 401, nothing queued
        event = json.dumps(seaweedfs_event(bucket, "out/report.csv")).encode()
        assert served.call("POST", "/api/v1/events/seaweedfs", token=None, data=event).status == 401
        assert served.call("POST", "/api/v1/events/seaweedfs", token="x" * 32, data=event).status == 401
        # the same event again, with the right token: accepted, and nothing is delivered twice
        again = served.call("POST", "/api/v1/events/seaweedfs", data=event)
        assert again.status == 202, again
        time.sleep(1.0)
        copied = [d for d in served.get("/api/v1/deliveries")["deliveries"] if d["path"].endswith("report.csv")]
        assert len(copied) == 1, copied
        assert sorted(p.name for p in inbox.iterdir()) == ["early.csv", "report.csv"]
    finally:
        served.stop()


def test_an_unknown_serve_key_or_flow_is_a_usage_error(tmp_path: Path, ssh: testbed.SshServer,
                                                         webhook: tuple[testbed.SeaweedServer, int, str, Path]) -> None:
    from support.helpers import run_cli

    server, _, _, token_file = webhook
    flows = tmp_path / "flows.toml"
    base = push_flow("outbox", "outbox-bucket", server.endpoint, ssh, tmp_path / "in")
    for extra, said in (('\n[serve]\nevent = 1\n', "unknown key 'event'"),
                        ('\n[serve.events]\nflows = ["nope"]\n', "no flow named 'nope'")):
        flows.write_text(base + extra)
        result = run_cli("serve", "--check", "--token-file", str(token_file), str(flows))
        assert result.code == 2, result.stderr
        assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr

"""``s3ferry serve``: the flows on their schedules behind one HTTP port, against real SeaweedFS and sshd.

The API and /metrics are behind the token (none: 401, a wrong one: 403), /healthz is open, TLS works with a
certificate made here; the API lists flows, deliveries, failures and the retry queue, and its buttons act on
the jobs' own journal: trigger, retry now, drop, pause/resume. SIGTERM mid-transfer stops promptly; kill -9
mid-push, then a restart: the object ends on the SFTP server once, with the right bytes.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import S3FERRY
from support.serve import Served, new_token, push_flow, self_signed, start_serve


class Outbox:
    """A bucket's ``out/`` prefix and the SFTP folder a push flow delivers it to."""

    def __init__(self, s3: testbed.SeaweedServer, ssh: testbed.SshServer, bucket: str) -> None:
        self.client, self.bucket = s3.client(), bucket
        self.folder = ssh.root / f"inbox-{bucket}"

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"out/{name}", Body=data)

    def break_destination(self) -> None:
        """A file where the folder goes (the folder, if any, moved aside): every delivery fails."""
        if self.folder.is_dir():
            self.folder.rename(self.folder.with_name(f"{self.folder.name}-{len(list(self.folder.parent.iterdir()))}"))
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.folder.write_bytes(b"not a folder")

    def mend_destination(self) -> None:
        self.folder.unlink()

    def files(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir()) if self.folder.is_dir() else []


@pytest.fixture
def box(s3: testbed.SeaweedServer, ssh: testbed.SshServer, bucket: str, s3_env: dict[str, str]) -> Outbox:
    return Outbox(s3, ssh, bucket)


def delivered(served: Served, path: str) -> bool:
    return any(d["path"] == path for d in served.get("/api/v1/deliveries")["deliveries"])


def test_api_behind_the_token_over_tls(tmp_path: Path, s3: testbed.SeaweedServer, ssh: testbed.SshServer,
                                       bucket: str, box: Outbox) -> None:
    box.put("a.csv", b"id\n1\n")
    flows = tmp_path / "flows.toml"
    flows.write_text(push_flow("outbox", bucket, s3.endpoint, ssh, box.folder)
                     + '[flows.other]\nkind = "pull"\nsource = "/nonexistent/"\n'
                       f'destination = "s3://{bucket}/in/"\nschedule = "0 3 * * *"\nendpoint_url = "{s3.endpoint}"\n')
    token, token_file = new_token(tmp_path)
    served = start_serve(flows, tmp_path / "state", token, token_file, tls=self_signed(tmp_path))
    try:
        # the token: none -> 401, wrong -> 403, right -> 200; /healthz open; /metrics behind it
        assert served.call("GET", "/healthz", token=None).json()["status"] == "ok"
        for path in ("/api/v1/flows", "/metrics", "/api/v1/openapi.json", "/static/page.js"):
            assert served.call("GET", path, token=None).status == 401, path
            assert served.call("GET", path, token="x" * 48).status == 403, path
        assert served.call("POST", "/api/v1/flows/outbox/trigger", token=None, data=b"").status == 401
        assert served.call("GET", "/", token=None).status == 200  # a browser is sent to the login form
        assert b"s3ferry_" in served.call("GET", "/metrics").body
        spec = served.get("/api/v1/openapi.json")
        assert spec["openapi"] == "3.1.0" and "/api/v1/flows/{name}/trigger" in spec["paths"]
        # the every-flow ran at start: its delivery is listed, the file is there
        served.wait(lambda: delivered(served, "a.csv"), note="first delivery")
        assert (box.folder / "a.csv").read_bytes() == b"id\n1\n"
        listed = {f["name"]: f for f in served.get("/api/v1/flows")["flows"]}
        assert listed["outbox"]["state"] == "healthy" and listed["outbox"]["last_run"]["status"] == "ok"
        assert listed["other"]["next_run"].endswith("03:00:00Z") and listed["other"]["last_run"] is None
        assert served.get("/api/v1/runs?flow=outbox")["runs"][0]["copied"] == 1
        # failing deliveries land in the retry queue and the failures
        box.break_destination()
        box.put("b.csv", b"id\n2\n")
        box.put("c.csv", b"id\n3\n")
        assert served.post("/api/v1/flows/outbox/trigger").status == 202
        assert served.post("/api/v1/flows/outbox/trigger").status == 409  # one run of a flow at a time
        served.wait(lambda: not served.get("/api/v1/flows/outbox")["running"], note="run over")
        assert [q["key"] for q in served.get("/api/v1/queue?flow=outbox")["queue"]] == ["out/b.csv", "out/c.csv"]
        assert served.get("/api/v1/flows/outbox")["state"] == "failing"
        assert served.get("/api/v1/flows/outbox")["queue_depth"] == 2
        failed = served.get("/api/v1/failures?flow=outbox")["failures"]
        assert sorted(f["path"] for f in failed) == ["b.csv", "c.csv"] and "not a directory" in failed[0]["error"]
        assert len(served.get("/api/v1/failures?limit=1&offset=1")["failures"]) == 1
        # retry now, one object, once the destination is mended: it is delivered, the other one waits
        box.mend_destination()
        assert served.post("/api/v1/flows/outbox/queue/retry?key=out/b.csv").status == 202
        served.wait(lambda: delivered(served, "b.csv"), note="retried delivery")
        served.wait(lambda: not served.get("/api/v1/flows/outbox")["running"], note="run over")
        assert [q["key"] for q in served.get("/api/v1/queue")["queue"]] == ["out/c.csv"]
        assert box.files() == ["b.csv"]
        # drop: the object leaves the queue, undelivered
        assert served.call("DELETE", "/api/v1/flows/outbox/queue/out/c.csv").json()["dropped"] == "out/c.csv"
        assert served.get("/api/v1/queue")["queue"] == []
        assert served.call("DELETE", "/api/v1/flows/outbox/queue/out/c.csv").status == 404
        assert box.files() == ["b.csv"]
        # pause and resume; pagination; unknown names
        assert served.post("/api/v1/flows/outbox/pause").json()["state"] == "paused"
        assert served.get("/api/v1/flows/outbox")["next_run"] is None
        assert served.post("/api/v1/flows/outbox/resume").json()["state"] != "paused"
        assert [d["path"] for d in served.get("/api/v1/deliveries?limit=1")["deliveries"]] == ["b.csv"]
        assert [d["path"] for d in served.get("/api/v1/deliveries?limit=1&offset=1")["deliveries"]] == ["a.csv"]
        assert served.call("GET", "/api/v1/flows/nope").status == 404
        assert served.call("GET", "/api/v1/runs?limit=0").status == 400
        assert served.get("/api/v1/progress") == {"running": []}
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0, served.err.seen
    finally:
        served.stop()
    assert not any(token in line for line in served.err.seen + served.out.seen)


def test_sigterm_and_kill_9_mid_push_deliver_once(tmp_path: Path, s3: testbed.SeaweedServer,
                                                  ssh: testbed.SshServer, bucket: str, box: Outbox) -> None:
    """SIGTERM with a short --grace: cancelled, exit 130 at once; kill -9; then SIGTERM with a long --grace:
    the run finishes (exit 0). The object is on the server once, with its bytes, and is not sent again."""
    data = hashlib.sha256(b"seed").digest() * (24 * 1024 * 1024 // 32)  # 24 MiB, three parts
    box.put("big.bin", data)
    flows = tmp_path / "flows.toml"
    flows.write_text(push_flow("big", bucket, s3.endpoint, ssh, box.folder, extra='bwlimit = "4MiB"\n'))
    state = tmp_path / "state"
    token, token_file = new_token(tmp_path)

    def mid_transfer(grace: str) -> Served:
        served = start_serve(flows, state, token, token_file, "--grace", grace)
        running = served.wait(lambda: [p for p in served.get("/api/v1/progress")["running"] if p["bytes_done"]],
                              note="progress")
        assert running[0]["flow"] == "big" and running[0]["bytes_total"] == len(data)
        assert running[0]["bytes_done"] < len(data) and running[0]["files"] == ["big.bin"]
        assert served.get("/api/v1/flows/big")["state"] == "running"
        return served

    served = mid_transfer("0.5")
    try:  # the run cannot finish within --grace: it is cancelled, exit 130, promptly
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=15) == 130
        assert "runs still in flight after --grace were stopped" in served.err.seen[-1]
    finally:
        served.stop()
    # checkpointed: at most the engine's temporary name (kept for the resume), never a half-written big.bin
    assert all(name.startswith(".big.bin.s3ferry-") and name.endswith(".tmp") for name in box.files())
    served = mid_transfer("60")
    served.stop()  # kill -9: nothing cleans up
    served = mid_transfer("60")
    try:  # the run finishes within --grace: exit 0
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=60) == 0, served.err.seen
        assert any("waiting up to 60 s for 1 run in flight" in line for line in served.err.seen)
    finally:
        served.stop()
    assert (box.folder / "big.bin").read_bytes() == data
    flows.write_text(push_flow("big", bucket, s3.endpoint, ssh, box.folder))
    served = start_serve(flows, state, token, token_file)
    try:  # started again: already delivered (the ledger and the tag), nothing is copied
        served.wait(lambda: served.get("/api/v1/runs")["runs"], note="the run at start")
        run = served.get("/api/v1/runs")["runs"][0]
        assert (run["status"], run["copied"], run["skipped"]) == ("ok", 0, 1), run
        assert served.get("/api/v1/queue")["queue"] == []
    finally:
        served.stop()
    assert box.files() == ["big.bin"]
    assert (box.folder / "big.bin").read_bytes() == data


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, s3: testbed.SeaweedServer) -> None:
    flows = tmp_path / "flows.toml"
    flows.write_text('[flows.x]\nkind = "push"\nsource = "s3://bkt/out/"\ndestination = "/tmp/in/"\n'
                     'every = "1h"\n')
    token, token_file = new_token(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([S3FERRY, "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(token_file),
                               "--state-dir", str(tmp_path / "state"), str(flows)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"s3ferry: error: cannot listen on http://127.0.0.1:{port}/: ")
    assert token not in done.stderr


@pytest.mark.usefixtures("s3_env")
def test_pause_resume_and_sighup_reload(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    """A paused flow's times pass without a run; resumed, it runs again; SIGHUP reloads the flows file."""
    def local_push(name: str) -> str:
        return (f'[flows.{name}]\nkind = "push"\nsource = "s3://{bucket}/out/"\n'
                f'destination = "{tmp_path / name}/"\nevery = "1s"\nendpoint_url = "{s3.endpoint}"\n')

    flows = tmp_path / "flows.toml"
    flows.write_text(local_push("often"))
    token, token_file = new_token(tmp_path)
    served = start_serve(flows, tmp_path / "state", token, token_file)

    def runs() -> int:
        return len(served.get("/api/v1/runs?flow=often&limit=500")["runs"])

    try:
        served.wait(lambda: runs() >= 2, note="two runs")
        served.post("/api/v1/flows/often/pause")
        served.wait(lambda: not served.get("/api/v1/flows/often")["running"], note="run over")
        before = runs()
        time.sleep(3)  # three of its times pass
        assert runs() == before and served.get("/api/v1/flows/often")["state"] == "paused"
        assert served.post("/api/v1/flows/often/trigger").status == 202  # paused: still runs when asked
        served.wait(lambda: runs() == before + 1, note="triggered run")
        served.post("/api/v1/flows/often/resume")
        served.wait(lambda: runs() >= before + 3, note="runs after resume")
        flows.write_text(local_push("often") + local_push("added"))
        served.proc.send_signal(signal.SIGHUP)
        served.wait(lambda: len(served.get("/api/v1/flows")["flows"]) == 2, note="reloaded")
        served.wait(lambda: served.get("/api/v1/runs?flow=added")["runs"], note="the added flow ran")
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0, served.err.seen  # a run in flight finishes within --grace
    finally:
        served.stop()


def test_an_unusable_journal_is_503_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("a file where the state dir should be")
    flows = tmp_path / "flows.toml"
    flows.write_text(f'[flows.x]\nkind = "pull"\nsource = "{tmp_path}/in/"\ndestination = "s3://bkt/in/"\n'
                     f'schedule = "0 3 * * *"\nstate_dir = "{tmp_path / "not-a-folder"}"\n')
    token, token_file = new_token(tmp_path)
    served = start_serve(flows, tmp_path / "state", token, token_file)
    try:
        answer = served.call("GET", "/api/v1/flows")
        assert answer.status == 503 and str(tmp_path / "not-a-folder") in answer.json()["error"]
        assert served.get("/api/v1/runs") == {"runs": [], "offset": 0, "limit": 50}  # no journal needed
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0
    finally:
        served.stop()
    assert not any("Traceback" in line for line in served.err.seen), served.err.seen

"""``s3ferry run`` as a service: it says what it will do on start, reloads its flows file on SIGHUP (a bad file
changes nothing and says why), and stops cleanly on SIGTERM (exit 130, locks released)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import LineReader, json_lines, object_sha256, pull_flow, run_cli, start_run, stop, write_random


def folder(tmp_path: Path, name: str, size: int = 1000) -> str:
    """A drop folder holding one file; its digest."""
    (tmp_path / name).mkdir()
    return write_random(tmp_path / name / f"{name}.bin", size)


@pytest.mark.usefixtures("s3_env")
def test_start_plan_and_sighup_reload(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    folder(tmp_path, "first")
    digest = folder(tmp_path, "second")
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("first", "first/", bucket, s3.endpoint))
    port = testbed.free_port()
    proc = start_run("--json", "--metrics-port", str(port), "--state-dir", str(tmp_path / "state"), str(path))
    try:
        out, err = LineReader(proc.stdout), LineReader(proc.stderr)
        # on start: what it will do, and where its metrics are
        head = err.wait_for("running 1 flow", timeout=60)
        assert head == (f"s3ferry: running 1 flow of {path}; metrics on http://127.0.0.1:{port}/metrics\n")
        plan = err.wait_for("first:", timeout=5)
        assert plan == f"s3ferry:   first: pull {tmp_path}/first/ -> s3://{bucket}/in/, every 1h, next run at start\n"
        assert out.next_report(timeout=60)["flow"] == "first"
        # a bad file: the old flows keep running, one line says why
        path.write_text(pull_flow("first", "first/", bucket, s3.endpoint) + '\n[flows.broken]\nkind = "pul"\n')
        proc.send_signal(signal.SIGHUP)
        refused = err.wait_for("reload refused", timeout=30)
        assert refused.startswith(f"s3ferry: reload refused: {path}: ")
        assert f"(first: {path}:" in refused and refused.endswith("; the flows loaded before keep running\n")
        assert proc.poll() is None
        # a good file: the new flow is announced and runs (at once: it is "every"), the unchanged one does not
        path.write_text(pull_flow("first", "first/", bucket, s3.endpoint)
                        + pull_flow("second", "second/", bucket, s3.endpoint))
        proc.send_signal(signal.SIGHUP)
        reloaded = err.wait_for("reloaded", timeout=30)
        assert reloaded == f"s3ferry: reloaded {path} (added: second): 2 flows\n"
        report = out.next_report(timeout=60)
        assert (report["flow"], report["copied"], report["status"]) == ("second", 1, "ok")
        assert object_sha256(s3, bucket, "in/second.bin") == digest
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130
    assert not [line for line in out.seen if '"flow": "first"' in line][1:]  # "first" ran once, not again


@pytest.mark.usefixtures("s3_env")
def test_sigterm_stops_a_run_in_flight_and_releases_its_locks(tmp_path: Path, s3: testbed.SeaweedServer,
                                                              bucket: str) -> None:
    digest = folder(tmp_path, "drop", 9 * 1024 * 1024)  # two parts: completed by CompleteMultipartUpload
    path = tmp_path / "flows.toml"
    state = str(tmp_path / "state")
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.hold_complete = threading.Event()  # the run hangs at completion: it is in flight
        path.write_text(pull_flow("slow", "drop/", bucket, proxy.url))
        proc = start_run("--json", "--state-dir", state, str(path))
        try:
            err = LineReader(proc.stderr)
            err.wait_for("running 1 flow", timeout=60)
            assert proxy.complete_seen.wait(60), err.seen
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            proxy.hold_complete.set()
            stop(proc)
        assert proc.returncode == 130, err.seen
        assert err.seen[-1].startswith("s3ferry: interrupted")
        # at once: the flow's lock (and the job's) are free, and the next run finishes the file
        again = run_cli("run", "--once", "--json", "--state-dir", state, str(path), timeout=120)
    assert again.code == 0, again.stderr
    (report,) = json_lines(again.stdout)
    # copied, or healed: the held completion may have reached S3 after all (then it is only archived)
    assert report["status"] == "ok" and report["copied"] + report["healed"] == 1, report
    assert object_sha256(s3, bucket, "in/drop.bin") == digest

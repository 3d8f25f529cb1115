"""A failing flow stays failed until its retry queue empties: status, exit code, "waiting", one error per run,
the last-success metric; ``s3ferry status`` and ``s3ferry history`` read what the runs recorded; an old
journal is migrated and keeps its records."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from s3ferry.engine.journal import MIGRATIONS, SCHEMA, Journal
from s3ferry.jobs import flowfile, runner
from s3ferry.observe.metrics import REGISTRY
from support.helpers import Run, json_lines, run_cli, write_random

LAST_SUCCESS = "s3ferry_flow_last_success_timestamp_seconds"


@dataclass
class Failing:
    """Two runs of a flows file: "out" pushes three objects to a host nobody listens on, "good" pulls a file."""

    path: Path
    state: Path
    port: int
    runs: list[Run]

    def run(self, *args: str) -> Run:
        return run_cli(*args, "--state-dir", str(self.state), str(self.path))


def failing_push(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str, *more: str) -> Failing:
    client = s3.client()
    for name in ("a.csv", "b.csv", "c.csv"):
        client.put_object(Bucket=bucket, Key=f"outbox/{name}", Body=name.encode() * 100)
    (tmp_path / "drop").mkdir()
    write_random(tmp_path / "drop" / "x.bin", 1000)
    port = testbed.free_port()  # nothing listens there: connection refused
    path = tmp_path / "flows.toml"
    path.write_text(f"""\
[defaults]
endpoint_url = "{s3.endpoint}"

[flows.out]
kind = "push"
source = "s3://{bucket}/outbox/"
destination = "sftp://etl@127.0.0.1:{port}/inbox/"
every = "1h"

[flows.good]
kind = "pull"
source = "drop/"
destination = "s3://{bucket}/in/"
every = "1h"
""")
    failing = Failing(path, tmp_path / "state", port, [])
    failing.runs = [failing.run("run", "--once", "--json", *more) for _ in range(2)]
    return failing


def error_lines(run: Run) -> list[str]:
    return [line for line in run.stderr.splitlines() if "error" in line]


@pytest.mark.usefixtures("s3_env")
def test_a_push_to_an_unreachable_host_stays_failed_while_objects_wait(
        tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    failing = failing_push(tmp_path, s3, bucket)
    first, second = failing.runs
    # the first run: one error for the run (not one per object), naming the flow; the objects wait
    assert first.code == 1, first.stderr
    reports = {r["flow"]: r for r in json_lines(first.stdout)}
    out = reports["out"]
    assert (out["status"], out["exit_code"], out["failed"], out["waiting"], out["copied"]) == ("failed", 1, 0, 3, 0)
    assert f"cannot connect to etl@127.0.0.1:{failing.port}" in out["error"]
    (line,) = error_lines(first)
    assert line.startswith(f"s3ferry: error: flow out: cannot connect to etl@127.0.0.1:{failing.port}")
    assert reports["good"]["status"] == "ok"
    # the second run: nothing new is tried, yet the run is not ok, and the queued objects are "waiting"
    assert second.code == 1, second.stderr
    out = {r["flow"]: r for r in json_lines(second.stdout)}["out"]
    assert (out["status"], out["exit_code"], out["waiting"], out["skipped"]) == ("failed", 1, 3, 0)
    (line,) = error_lines(second)
    assert line.startswith("s3ferry: error: flow out: 3 objects wait in the retry queue (oldest: outbox/")
    assert "cannot connect" in line
    # the same in text
    third = failing.run("run", "--once")
    assert third.code == 1
    summary = next(line for line in third.stdout.splitlines() if line.startswith("out: "))
    assert "3 WAITING" in summary and "skipped" not in summary
    # a plain push of the same outbox and destination says the same, without a flow name
    plain = run_cli("push", "--state-dir", str(failing.state), "--endpoint-url", s3.endpoint,
                    f"s3://{bucket}/outbox/", f"sftp://etl@127.0.0.1:{failing.port}/inbox/")
    assert plain.code == 1 and "3 WAITING" in plain.stdout, plain.stderr
    (line,) = error_lines(plain)
    assert line.startswith("s3ferry: error: 3 objects wait in the retry queue")
    # the last-success metric does not move for the failing flow (the good one shows it does for a good run)
    flows = runner.with_state_dir(list(flowfile.load(failing.path).flows.values()), failing.state)
    outcomes: list[runner.Outcome] = []
    assert asyncio.run(runner.run_once(flows, outcomes.append)) == 1
    assert sorted((o.flow.name, o.status) for o in outcomes) == [("good", "ok"), ("out", "failed")]
    assert (REGISTRY.get_sample_value(LAST_SUCCESS, {"flow": "good"}) or 0) > 0
    assert REGISTRY.get_sample_value(LAST_SUCCESS, {"flow": "out"}) is None
    assert REGISTRY.get_sample_value("s3ferry_push_retry_queue_depth", {"flow": "out"}) == 3


@pytest.mark.usefixtures("s3_env")
def test_status_shows_each_flows_last_run_next_run_and_queue(tmp_path: Path, s3: testbed.SeaweedServer,
                                                             bucket: str) -> None:
    failing = failing_push(tmp_path, s3, bucket)
    text = failing.run("status")
    assert text.code == 0, text.stderr
    out, good = text.stdout.split("\ngood: ")
    lines = out.splitlines()
    assert lines[0] == f"out: push s3://{bucket}/outbox/ -> sftp://etl@127.0.0.1:{failing.port}/inbox/"
    assert lines[1].startswith("  last run:   ") and "failed (exit 1), 0 copied, 0 failed, 3 waiting" in lines[1]
    assert lines[2].startswith("  next run:   ")
    # the three failed at once (files in flight together): whichever was first is the oldest
    assert re.match(r"  retry queue: 3 waiting; oldest failure outbox/[abc]\.csv since ", lines[3]), lines[3]
    assert "cannot connect to" in lines[3]
    assert ", ok, 0 copied" in good  # its second run found nothing new
    by_flow = {s["flow"]: s for s in json_lines(failing.run("status", "--json").stdout)}
    out_status = by_flow["out"]
    assert (out_status["kind"], out_status["queue_depth"]) == ("push", 3)
    assert out_status["last_run"]["status"] == "failed" and out_status["last_run"]["waiting"] == 3
    assert out_status["next_run"].endswith("Z")
    assert out_status["oldest_failure"]["key"] == "outbox/" + re.findall(r"outbox/(\w\.csv)", lines[3])[0]
    assert "cannot connect" in out_status["oldest_failure"]["error"]
    assert by_flow["good"]["queue_depth"] == 0 and by_flow["good"]["last_run"]["status"] == "ok"
    # without the flows file: the flows the journal has runs of
    recorded = {s["flow"]: s for s in json_lines(run_cli("status", "--json", "--state-dir",
                                                         str(failing.state)).stdout)}
    assert set(recorded) == {"out", "good"} and recorded["out"]["queue_depth"] == 3
    assert recorded["out"]["next_run"] is None


@pytest.mark.usefixtures("s3_env")
def test_history_lists_deliveries_and_failures(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    failing = failing_push(tmp_path, s3, bucket)
    state = ["--state-dir", str(failing.state)]
    everything = json_lines(run_cli("history", "--json", *state).stdout)
    assert {(e["flow"], e["result"], e["path"]) for e in everything} == {
        ("good", "copied", "x.bin"), ("out", "failed", "")}
    failure = next(e for e in everything if e["result"] == "failed")
    assert "cannot connect" in failure["error"] and failure["kind"] == "push"
    assert [e["flow"] for e in json_lines(run_cli("history", "--json", "--failed", *state).stdout)] == ["out"]
    assert [e["flow"] for e in json_lines(run_cli("history", "--json", "--flow", "good", *state).stdout)] == ["good"]
    assert len(json_lines(run_cli("history", "--json", "--limit", "1", *state).stdout)) == 1
    assert json_lines(run_cli("history", "--json", "--since", "0s", *state).stdout) == []
    text = run_cli("history", "--failed", *state)
    (line,) = text.stdout.splitlines()
    assert " out: push failed (the run): cannot connect to " in line


def test_an_old_journal_is_migrated_and_keeps_its_records(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "journal.sqlite3")
    old.executescript(SCHEMA)  # the tables as an s3ferry before the runs table wrote them
    old.execute("INSERT INTO push_queue VALUES ('s3://b/o/', 'sftp://h/in/', 'o/k', 'e1', 2, 'boom', 1000.0)")
    old.commit()
    old.close()

    async def read() -> tuple[int, str | None, float | None]:
        journal = Journal(tmp_path)
        try:
            summary = await journal.queue_summary("s3://b/o/", "sftp://h/in/")
            assert summary.oldest is not None
            return summary.depth, summary.oldest.last_error, summary.oldest.first_failed
        finally:
            await journal.close()

    assert asyncio.run(read()) == (1, "boom", None)
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    db.close()
    assert asyncio.run(read())[0] == 1  # opened again: nothing applied twice

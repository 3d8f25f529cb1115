"""The audit trail's chain (s3ferry.observe.audit) and its commands on a log written here: appends, what
`audit verify` catches (an edited, a removed, two swapped entries; a cut-off tail against an anchored head),
two processes appending at once, `audit show`'s filters. No servers: the deliveries are made up."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from s3ferry.cli import main
from s3ferry.core.redaction import register_secret
from s3ferry.observe.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    Checksum,
    Delivery,
    Selection,
    entry_hash,
    resolve,
    select,
    verify,
)
from support.audit import edit, lines, records, remove, swap

ENV = {"S3FERRY_CONFIG": "/dev/null"}


def delivery(n: int, op: str = "cp", flow: str | None = None) -> Delivery:
    return Delivery(op, flow, f"sftp://me@host:22/out/f{n}.csv", f"s3://raw/in/f{n}.csv", 1000 + n,  # type: ignore[arg-type]
                    Checksum("crc32c", f"AAAA{n:04d}"), True, "crc32c, computed from the bytes read; S3 checked it",
                    etag=f"{n:032x}")


def filled(tmp_path: Path, count: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    for n in range(1, count + 1):
        log.append(delivery(n, op="pull" if n % 2 else "push", flow="in" if n % 2 else "out"))
    return log


def audit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", *args], env=ENV)
    return result.exit_code, result.output


def test_entries_are_chained_and_hashed_canonically(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    rows = records(log.path)
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[0]["prev"] == GENESIS and rows[1]["prev"] == rows[0]["hash"] and rows[2]["prev"] == rows[1]["hash"]
    for row, line in zip(rows, lines(log.path), strict=True):
        assert line == json.dumps(row, sort_keys=True, separators=(",", ":"))  # canonical on disk too
        assert row["hash"] == entry_hash(row)
        assert row["time"].endswith("Z")
    assert rows[0]["checksum"] == {"algorithm": "crc32c", "value": "AAAA0001"}
    assert set(rows[0]) == {"seq", "time", "op", "flow", "source", "destination", "size", "checksum", "verified",
                            "verification", "etag", "version_id", "prev", "hash"}
    assert log.path.stat().st_mode & 0o777 == 0o600
    report = verify(log)
    assert report.intact and report.count == 3 and report.head == rows[2]["hash"]


def test_verify_passes_then_catches_an_edited_entry(tmp_path: Path) -> None:
    log = filled(tmp_path)
    code, out = audit("verify", "--log", str(log.path))
    head = records(log.path)[-1]["hash"]
    assert code == 0 and f"5 entries, chain intact, head {head[:16]}" in out
    edit(log.path, 3, size=999_999)
    code, out = audit("verify", "--log", str(log.path))
    assert code == 3 and "line 3 (seq 3) was edited: its hash does not match" in out
    assert len(out.strip().splitlines()) == 1


def test_an_edit_with_a_recomputed_hash_breaks_the_next_line(tmp_path: Path) -> None:
    log = filled(tmp_path)
    rows = records(log.path)
    rows[1]["destination"] = "s3://elsewhere/x"
    rows[1]["hash"] = entry_hash(rows[1])
    log.path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows))
    report = verify(log)
    assert report.broken_line == 3 and "does not follow the entry before it" in str(report.problem)


def test_verify_catches_a_removed_middle_entry(tmp_path: Path) -> None:
    log = filled(tmp_path)
    remove(log.path, 3)
    code, out = audit("verify", "--log", str(log.path))
    assert code == 3 and "line 3 holds seq 4 after seq 2: an entry was removed or reordered" in out


def test_verify_catches_a_removed_first_entry(tmp_path: Path) -> None:
    log = filled(tmp_path)
    remove(log.path, 1)
    report = verify(log)
    assert report.broken_line == 1 and "not 1" in str(report.problem)


def test_verify_catches_two_swapped_entries(tmp_path: Path) -> None:
    log = filled(tmp_path)
    swap(log.path, 2)
    code, out = audit("verify", "--log", str(log.path))
    assert code == 3 and "line 2 holds seq 3 after seq 1" in out


def test_a_line_that_is_no_entry_is_named(tmp_path: Path) -> None:
    log = filled(tmp_path)
    rows = lines(log.path)
    rows[3] = rows[3][:40]
    log.path.write_text("\n".join(rows) + "\n")
    report = verify(log)
    assert report.broken_line == 4 and "is not an audit entry" in str(report.problem)


def test_a_cut_off_tail_is_caught_only_against_an_anchored_head(tmp_path: Path) -> None:
    log = filled(tmp_path)
    head = records(log.path)[-1]["hash"]
    code, out = audit("verify", "--log", str(log.path), "--expect-head", head[:12])
    assert code == 0 and "expected head at line 5" in out
    remove(log.path, 5)
    assert verify(log).intact  # the chain alone cannot tell
    code, out = audit("verify", "--log", str(log.path), "--expect-head", head[:12])
    assert code == 3 and "is not in the chain" in out
    code, out = audit("verify", "--log", str(log.path), "--expect-head", "xyz")
    assert code == 2 and "--expect-head takes 8 to 64 hex digits" in out


def test_an_empty_or_missing_log_is_an_intact_chain_of_nothing(tmp_path: Path) -> None:
    code, out = audit("verify", "--log", str(tmp_path / "none.jsonl"))
    assert code == 0 and f"0 entries, chain intact, head {GENESIS[:16]}" in out


def test_appending_after_a_damaged_last_line_is_refused(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    with log.path.open("a") as f:
        f.write('{"seq": 3, "tr')  # a write cut short
    with pytest.raises(AuditError, match=r"last line of the audit log .* is not an entry"):
        log.append(delivery(3))


RACER = """
import sys, time
from pathlib import Path
from s3ferry.observe.audit import AuditLog, Checksum, Delivery
log, go, name = AuditLog(Path(sys.argv[1])), Path(sys.argv[2]), sys.argv[3]
while not go.exists():
    time.sleep(0.001)
for n in range(int(sys.argv[4])):
    log.append(Delivery("cp", name, f"/src/{name}/{n}", f"s3://b/{name}/{n}", n, Checksum("crc32c", "x"), False,
                        "not verified: test"))
"""


def test_two_processes_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    path, go, count = tmp_path / "audit.jsonl", tmp_path / "go", 150
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(path), str(go), name, str(count)])
              for name in ("a", "b")]
    time.sleep(0.5)  # both started and waiting
    go.touch()
    assert [p.wait(timeout=120) for p in racers] == [0, 0]
    report = verify(AuditLog(path))
    assert report.intact, report.problem
    assert report.count == 2 * count
    rows = records(path)
    assert sorted((r["flow"], r["size"]) for r in rows) == sorted((f, n) for f in "ab" for n in range(count))
    flows = [r["flow"] for r in rows]
    assert any(a != b for a, b in itertools.pairwise(flows)), "the appends never interleaved"


def test_secrets_in_locations_are_masked(tmp_path: Path) -> None:
    register_secret("hunter2-audit-secret")
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(Delivery("cp", None, "https://host/f.bin?X-Amz-Signature=abcdef123456", "/x/hunter2-audit-secret/y",
                        1, None, False, "not verified: http"))
    text = log.path.read_text()
    assert "abcdef123456" not in text and "hunter2-audit-secret" not in text
    assert verify(log).intact


def test_resolve_the_setting(tmp_path: Path) -> None:
    assert resolve("off", tmp_path) is None
    default = resolve(None, tmp_path)
    assert default is not None and default.path == tmp_path / "audit.jsonl"
    named = resolve(str(tmp_path / "elsewhere.jsonl"), tmp_path / "state")
    assert named is not None and named.path == tmp_path / "elsewhere.jsonl"


def test_show_filters(tmp_path: Path) -> None:
    log = filled(tmp_path)
    assert [e.seq for e in select(log, Selection(flow="in"), pytest.fail)] == [1, 3, 5]
    assert [e.seq for e in select(log, Selection(op="push"), pytest.fail)] == [2, 4]
    assert [e.seq for e in select(log, Selection(grep="f4.csv"), pytest.fail)] == [4]
    code, out = audit("show", "--log", str(log.path), "--op", "pull", "--limit", "2", "--json")
    assert code == 0
    shown = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in shown] == [3, 5] and shown == records(log.path)[2::2]
    code, out = audit("show", "--log", str(log.path), "--since", "1h", "--grep", "f2.csv")
    rows = out.splitlines()
    assert code == 0 and rows[0].startswith("SEQ") and len(rows) == 2
    assert "push" in rows[1] and "out" in rows[1] and "sftp://me@host:22/out/f2.csv -> s3://raw/in/f2.csv" in rows[1]
    code, out = audit("show", "--log", str(log.path), "--until", "2000-01-01", "--json")
    assert code == 0 and out == ""
    code, out = audit("show", "--log", str(log.path), "--since", "yesterday")
    assert code == 2 and "--since takes an ISO 8601 time" in out


def test_the_commands_find_the_log_the_transfers_write(tmp_path: Path) -> None:
    log = filled(tmp_path)
    result = CliRunner().invoke(main, ["audit", "verify"], env={**ENV, "S3FERRY_AUDIT_LOG": str(log.path)})
    assert result.exit_code == 0 and "5 entries" in result.output
    result = CliRunner().invoke(main, ["audit", "show"], env={**ENV, "S3FERRY_AUDIT_LOG": "",
                                                              "S3FERRY_STATE_DIR": str(log.path.parent)})
    assert result.exit_code == 0 and len(result.output.splitlines()) == 6
    result = CliRunner().invoke(main, ["audit", "verify"], env={**ENV, "S3FERRY_AUDIT_LOG": "off"})
    assert result.exit_code == 2 and "no audit log is kept" in result.output


def test_deliveries_finishing_together_are_written_together_in_their_order(tmp_path: Path) -> None:
    """record_delivery's group commit: 200 deliveries at once take far fewer writes than entries (one
    flock and fsync each), and the chain holds them in the order they were handed over."""
    import asyncio
    import os

    from s3ferry.observe.audit import record_delivery

    log = AuditLog(tmp_path / "audit.jsonl")
    fsyncs = 0
    real_fsync = os.fsync

    def counted(fd: int) -> None:  # the OS call, counted: how many times the log went to disk
        nonlocal fsyncs
        fsyncs += 1
        real_fsync(fd)

    async def deliver_all() -> list[int]:
        entries = await asyncio.gather(*(record_delivery(log, delivery(n)) for n in range(1, 201)))
        return [e.seq for e in entries if e is not None]

    os.fsync = counted
    try:
        seqs = asyncio.run(deliver_all())
    finally:
        os.fsync = real_fsync
    assert seqs == list(range(1, 201))
    assert [r["size"] for r in records(log.path)] == [1000 + n for n in range(1, 201)]
    assert verify(log).intact and verify(log).count == 200
    assert 1 <= fsyncs < 20, fsyncs  # one per entry without the group commit


def test_a_log_that_cannot_be_written_fails_every_delivery_waiting_for_it(tmp_path: Path) -> None:
    import asyncio

    from s3ferry.observe.audit import record_delivery

    (tmp_path / "audit.jsonl").mkdir()  # a folder where the log should be

    async def deliver_all() -> list[BaseException | object]:
        return await asyncio.gather(*(record_delivery(AuditLog(tmp_path / "audit.jsonl"), delivery(n))
                                      for n in range(1, 6)), return_exceptions=True)

    outcomes = asyncio.run(deliver_all())
    assert all(isinstance(o, AuditError) for o in outcomes), outcomes

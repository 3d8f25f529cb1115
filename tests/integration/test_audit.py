"""The audit trail end to end: cp, cp -r, pull, push and a `run` flow each append the right entries to the
hash-chained log (size, checksum, what it was verified against, ETag); a failed transfer, a skipped file and a
dry run append none; `audit verify` passes on the real log and catches it edited, cut and reordered; `audit
show` filters; no secret (FTP password file, SSE-C key) reaches the log. Real sshd, SeaweedFS, FTP server."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3ferry.demo import servers as testbed
from servers.ftp_server import FtpServer
from support.audit import edit, records, remove, swap
from support.helpers import MiB, json_lines, key_forms, run_cli, sftp_flags, write_random

VERIFIED_INTO_S3 = "computed from the bytes read; S3 checked"


@pytest.fixture(scope="module")
def ftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    base = tmp_path_factory.mktemp("audit-ftp")
    server = FtpServer(base / "root", base / "work").start()
    yield server
    server.stop()


def cli(*args: str, code: int = 0) -> Any:
    run = run_cli(*args)
    assert run.code == code, run.stderr
    return run


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def head_etag(s3: testbed.SeaweedServer, bucket: str, key: str) -> str:
    return str(s3.client().head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


@pytest.mark.usefixtures("s3_env")
def test_cp_from_sftp_records_the_delivery_in_the_state_dir(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                            bucket: str, tmp_path: Path) -> None:
    src = ssh.root / f"audit-{bucket}" / "one.bin"
    src.parent.mkdir()
    write_random(src, 9 * MiB + 5)
    state = tmp_path / "state"
    run = cli("cp", ssh.url(src), f"s3://{bucket}/in/one.bin", "--state-dir", str(state), "--json", "--no-progress",
              *sftp_flags(ssh))
    result = json_lines(run.stdout)[0]
    [entry] = records(state / "audit.jsonl")
    assert (entry["seq"], entry["op"], entry["flow"]) == (1, "cp", None)
    assert (entry["source"], entry["destination"]) == (ssh.url(src), f"s3://{bucket}/in/one.bin")
    assert entry["size"] == 9 * MiB + 5
    assert entry["checksum"] == {"algorithm": "crc32c", "value": result["checksum"]}
    assert entry["verified"] is True and VERIFIED_INTO_S3 in entry["verification"]
    assert entry["verification"] == result["verification"]
    assert entry["etag"] == head_etag(s3, bucket, "in/one.bin")
    assert entry["prev"] == "0" * 64
    # a second cp finds the object there: skipped, no delivery
    cli("cp", ssh.url(src), f"s3://{bucket}/in/one.bin", "--state-dir", str(state), "--no-progress", *sftp_flags(ssh))
    assert len(records(state / "audit.jsonl")) == 1


@pytest.mark.usefixtures("s3_env")
def test_cp_r_records_each_file_and_verify_catches_tampering(bucket: str, tmp_path: Path, clean_env: Path) -> None:
    tree = tmp_path / "tree"
    sizes = {"a.csv": 10, "sub/b.csv": 70_000, "sub/c.bin": 6 * MiB, "d.txt": 0, "e.txt": 3}
    for rel, size in sizes.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        write_random(tree / rel, size)
    cli("cp", "-r", str(tree), f"s3://{bucket}/t/", "--no-progress")  # the default state dir, under HOME
    log = clean_env / ".local" / "state" / "s3ferry" / "audit.jsonl"
    entries = records(log)
    assert sorted((e["destination"], e["size"]) for e in entries) == sorted(
        (f"s3://{bucket}/t/{rel}", size) for rel, size in sizes.items())
    assert {e["op"] for e in entries} == {"cp"} and all(e["verified"] for e in entries)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    head = entries[-1]["hash"]
    run = cli("audit", "verify")
    assert run.stdout.strip().startswith(f"5 entries, chain intact, head {head[:16]}")

    def tampered(name: str, change: Any, *args: int) -> str:
        copy = tmp_path / f"{name}.jsonl"
        shutil.copy(log, copy)
        change(copy, *args)
        run = cli("audit", "verify", "--log", str(copy), code=3)
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
        return run.stderr

    assert "line 2 (seq 2) was edited" in tampered("edited", lambda p, n: edit(p, n, size=1), 2)
    assert "line 3 holds seq 4 after seq 2" in tampered("removed", remove, 3)
    assert "line 4 holds seq 5 after seq 3" in tampered("swapped", swap, 4)
    # a cut-off tail against the head printed before
    cut = tmp_path / "cut.jsonl"
    shutil.copy(log, cut)
    remove(cut, 5)
    cli("audit", "verify", "--log", str(cut))
    assert "not in the chain" in cli("audit", "verify", "--log", str(cut), "--expect-head", head[:16], code=3).stderr
    # a dry run delivers nothing
    cli("cp", "-r", "--dry-run", "--overwrite", str(tree), f"s3://{bucket}/t/", "--no-progress")
    assert len(records(log)) == 5


@pytest.mark.usefixtures("s3_env")
def test_pull_push_and_a_flow_record_their_deliveries(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                      bucket: str, tmp_path: Path) -> None:
    drop = ssh.root / f"drop-{bucket}"
    drop.mkdir()
    digests = {name: write_random(drop / name, size) for name, size in (("x.csv", 100), ("y.csv", 2 * MiB))}
    state, log = tmp_path / "state", tmp_path / "trail" / "audit.jsonl"
    common = ["--state-dir", str(state), "--audit-log", str(log), "--no-progress", *sftp_flags(ssh)]
    cli("pull", ssh.url(drop), f"s3://{bucket}/in/", *common)
    pulled = records(log)
    assert sorted(e["destination"] for e in pulled) == [f"s3://{bucket}/in/x.csv", f"s3://{bucket}/in/y.csv"]
    for e in pulled:
        key = e["destination"].removeprefix(f"s3://{bucket}/")
        assert (e["op"], e["flow"], e["verified"]) == ("pull", None, True)
        assert e["source"] == ssh.url(drop / Path(key).name) and e["etag"] == head_etag(s3, bucket, key)
    assert not (state / "audit.jsonl").exists()  # --audit-log named another place

    inbox = ssh.root / f"inbox-{bucket}"
    cli("push", f"s3://{bucket}/in/", ssh.url(inbox), *common)
    pushed = records(log)[2:]
    assert sorted(e["destination"] for e in pushed) == [ssh.url(inbox / "x.csv"), ssh.url(inbox / "y.csv")]
    for e in pushed:
        name = Path(e["destination"]).name
        assert sha256(inbox / name) == digests[name]
        assert (e["op"], e["size"], e["verified"]) == ("push", (inbox / name).stat().st_size, True)
        assert "the source object's own" in e["verification"]

    # a flow of `run`: its name in each entry
    (drop / "z.csv").write_bytes(b"z" * 50)
    flows = tmp_path / "flows.toml"
    flows.write_text(f'[flows.partner-in]\nkind = "pull"\nsource = "{ssh.url(drop)}"\n'
                     f'destination = "s3://{bucket}/in/"\nevery = "1h"\nendpoint_url = "{s3.endpoint}"\n'
                     f'identity = "{ssh.user_key}"\nknown_hosts = "{ssh.known_hosts}"\n'
                     f'state_dir = "{state}"\naudit_log = "{log}"\n')
    cli("run", str(flows), "--once")
    last = records(log)[-1]
    assert (last["op"], last["flow"], last["seq"]) == ("pull", "partner-in", 5)
    assert last["destination"] == f"s3://{bucket}/in/z.csv"

    cli("audit", "verify", "--log", str(log))
    shown = json_lines(cli("audit", "show", "--log", str(log), "--op", "pull", "--json").stdout)
    assert [e["seq"] for e in shown] == [1, 2, 5]
    shown = json_lines(cli("audit", "show", "--log", str(log), "--flow", "partner-in", "--json").stdout)
    assert [e["seq"] for e in shown] == [5]
    table = cli("audit", "show", "--log", str(log), "--grep", "inbox-", "--limit", "1").stdout.splitlines()
    assert len(table) == 2 and " push " in table[1] and "yes" in table[1]


@pytest.mark.usefixtures("s3_env")
def test_failures_record_nothing_and_unverified_copies_say_so(ssh: testbed.SshServer, bucket: str,
                                                              tmp_path: Path) -> None:
    src = ssh.root / f"plain-{bucket}.bin"
    write_random(src, 1000)
    state = tmp_path / "state"
    log = state / "audit.jsonl"
    flags = ["--state-dir", str(state), "--no-progress", *sftp_flags(ssh)]
    # SFTP -> a file: nothing independent to compare with; refused under --require-verified (exit 3)
    cli("cp", ssh.url(src), str(tmp_path / "out.bin"), "--require-verified", *flags, code=3)
    cli("cp", ssh.url(src), f"s3://no-such-bucket-{bucket}/x", *flags, code=2)
    cli("cp", ssh.url(ssh.root / "no-such-file"), str(tmp_path / "none.bin"), *flags, code=2)
    assert not log.exists() or records(log) == []
    # without it the copy completes, and its entry says it was NOT verified and why
    cli("cp", ssh.url(src), str(tmp_path / "out.bin"), *flags)
    [entry] = records(log)
    assert entry["verified"] is False and "sizes compared" in entry["verification"]
    # --audit-log off: nothing recorded
    cli("cp", "--overwrite", "--audit-log", "off", ssh.url(src), str(tmp_path / "out.bin"), *flags)
    assert len(records(log)) == 1


@pytest.mark.usefixtures("s3_env")
def test_no_secret_reaches_the_log(ftp: FtpServer, bucket: str, tmp_path: Path) -> None:
    src = ftp.root_dir / f"secret-{bucket}.bin"
    write_random(src, 300_000)
    password_file, key_file = tmp_path / "pw", tmp_path / "sse.key"
    password_file.write_text(ftp.password + "\n")
    key = os.urandom(32)
    key_file.write_bytes(base64.b64encode(key) + b"\n")
    log = tmp_path / "audit.jsonl"
    cli("cp", ftp.url(src), f"s3://{bucket}/enc.bin", "--password-file", str(password_file), "--sse-c-key-file",
        str(key_file), "--audit-log", str(log), "--state-dir", str(tmp_path / "state"), "--no-progress")
    cli("cp", f"s3://{bucket}/enc.bin", str(tmp_path / "back.bin"), "--source-sse-c-key-file", str(key_file),
        "--audit-log", str(log), "--state-dir", str(tmp_path / "state"), "--no-progress")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    text = log.read_text()
    assert len(records(log)) == 2
    for secret in [ftp.password, *key_forms(key)]:
        assert secret not in text
    assert records(log)[0]["source"] == ftp.url(src)

"""s3ferry run: flows files (validation with line numbers), schedules, locks, once and long-running modes."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from s3ferry.core.errors import UsageError
from s3ferry.demo import servers as testbed
from s3ferry.jobs import flowfile
from s3ferry.jobs.pull import PullSettings
from s3ferry.jobs.schedule import Cron, Every, parse_duration
from s3ferry.operations.tree import selected
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_sha256, run_cli, sftp_flags, write_random

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def nexts(expr: str, start: datetime, count: int = 3) -> list[datetime]:
    cron, found, t = Cron.parse(expr), [], start
    for _ in range(count):
        t = cron.next_after(t)
        found.append(t)
    return found


# -- schedules ---------------------------------------------------------------------------------------------------


def test_durations() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == parse_duration("1m30s") == 90
    assert parse_duration("1d12h") == 36 * 3600
    assert parse_duration("1.5s") == 1.5
    assert Every.parse("2h").seconds == 7200
    for bad in ("10", "", "m", "10x", "30m1h", "-5m", "1h 2"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    with pytest.raises(UsageError, match="unit"):
        parse_duration("10")
    with pytest.raises(UsageError, match="shorter than one second"):
        Every.parse("0s")


def test_every_fires_at_start_then_each_interval() -> None:
    every = Every.parse("10m")
    now = utc(2026, 11, 21, 11, 7, 30)
    assert every.first_after(now) == now
    assert every.next_after(now) == utc(2026, 11, 21, 11, 17, 30)


def test_cron_minutes_hours_steps_and_lists() -> None:
    start = utc(2026, 11, 21, 11, 20, 5)  # a Saturday
    assert nexts("*/15 * * * *", start) == [utc(2026, 11, 21, 11, 30), utc(2026, 11, 21, 11, 45),
                                            utc(2026, 11, 21, 12, 0)]
    # strictly after: a time exactly on a firing minute gives the next one
    assert Cron.parse("*/15 * * * *").next_after(utc(2026, 11, 21, 11, 30)) == utc(2026, 11, 21, 11, 45)
    assert nexts("5,35 9-10 * * *", start, 4) == [utc(2026, 11, 22, 9, 5), utc(2026, 11, 22, 9, 35),
                                                  utc(2026, 11, 22, 10, 5), utc(2026, 11, 22, 10, 35)]
    assert nexts("10-50/20 * * * *", start) == [utc(2026, 11, 21, 11, 30), utc(2026, 11, 21, 11, 50),
                                                utc(2026, 11, 21, 12, 10)]
    assert nexts("50/5 23 * * *", start) == [utc(2026, 11, 21, 23, 50), utc(2026, 11, 21, 23, 55),
                                             utc(2026, 11, 22, 23, 50)]  # "a/s": from a to the end
    assert nexts("@hourly", start, 1) == [utc(2026, 11, 21, 12, 0)]


def test_cron_year_and_month_rollover() -> None:
    assert nexts("@monthly", utc(2026, 12, 31, 23, 59), 2) == [utc(2027, 1, 1), utc(2027, 2, 1)]
    assert nexts("0 0 1 1 *", utc(2026, 1, 1, 0, 0), 1) == [utc(2027, 1, 1)]
    # the 31st: months without one are skipped
    assert nexts("0 12 31 * *", utc(2026, 4, 1), 3) == [utc(2026, 5, 31, 12), utc(2026, 7, 31, 12),
                                                        utc(2026, 8, 31, 12)]
    # 29 February: only leap years, and 2100 is not one
    assert nexts("0 0 29 feb *", utc(2026, 3, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]
    assert nexts("0 0 29 2 *", utc(2097, 1, 1), 1) == [utc(2104, 2, 29)]
    assert nexts("0 6 * JUN-aug *", utc(2026, 8, 31, 7), 1) == [utc(2027, 6, 1, 6)]


def test_cron_days_of_week() -> None:
    sat = utc(2026, 11, 21, 12)
    assert nexts("30 9 * * mon-fri", sat, 6) == [utc(2026, 11, d, 9, 30) for d in (23, 24, 25, 26, 27, 30)]
    assert nexts("0 0 * * 7", sat, 2) == nexts("0 0 * * 0", sat, 2) == nexts("0 0 * * SUN", sat, 2) == [
        utc(2026, 11, 22), utc(2026, 11, 29)]
    assert nexts("0 0 * * 5-7", sat, 3) == [utc(2026, 11, 22), utc(2026, 11, 27), utc(2026, 11, 28)]
    # both day fields restricted: either matches (Vixie cron): the 1st, and every Monday
    assert nexts("0 0 1 * mon", sat, 4) == [utc(2026, 11, 23), utc(2026, 11, 30), utc(2026, 12, 1),
                                            utc(2026, 12, 7)]
    # a day field starting with "*" leaves the decision to the other one (AND)
    assert nexts("0 0 */1 * mon", sat, 2) == [utc(2026, 11, 23), utc(2026, 11, 30)]
    assert nexts("0 0 13 * fri", utc(2026, 3, 1), 2) == [utc(2026, 3, 6), utc(2026, 3, 13)]


def test_cron_accepts_aware_and_naive_times_as_utc() -> None:
    from datetime import timedelta

    plus2 = timezone(timedelta(hours=2))
    assert Cron.parse("0 12 * * *").next_after(datetime(2026, 6, 1, 14, 30, tzinfo=plus2)) == utc(2026, 6, 2, 12)
    assert Cron.parse("0 12 * * *").next_after(datetime(2026, 6, 1, 13, 30, tzinfo=plus2)) == utc(2026, 6, 1, 12)
    assert Cron.parse("0 12 * * *").next_after(datetime(2026, 6, 1, 11, 30)) == utc(2026, 6, 1, 12)


@pytest.mark.parametrize(("expr", "message"), [
    ("* * * *", "expected 5 fields"),
    ("* * * * * *", "expected 5 fields"),
    ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("* 24 * * *", "hour: 24 is out of range"),
    ("* * 0 * *", "day-of-month: 0 is out of range"),
    ("* * * 13 *", "month: 13 is out of range"),
    ("* * * * 8", "day-of-week: 8 is out of range"),
    ("*/0 * * * *", "step"),
    ("5-1 * * * *", "backwards"),
    ("* * * foo *", "not a number or a name"),
    ("1,,2 * * * *", "empty list item"),
    ("0 0 30 feb *", "never"),
    ("0 0 31 apr,jun,sep,nov *", "never"),
    ("@reboot", "unknown macro"),
])
def test_cron_refuses(expr: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Cron.parse(expr)


# -- flows file validation --------------------------------------------------------------------------------------

BAD = """\
[defaults]
state_dir = "state"
source = "sftp://a@b.example.com/c"

[flows.partner-drop]
kind = "pull"
source = "sftp://etl@partner.example.com/out"
destination = "s3://raw/partner/"
schedule = "*/15 * * *"
setle = "60s"
transfers = "4"

[flows.out]
kind = "push"
source = "sftp://x@y.example.com/z"
destination = "s3://bucket/k/"
every = "10"
schedule = "0 * * * *"
archive = ".done"
part_size = "1KiB"
checksum = "md5"

[flows."no dest"]
kind = "pull"
source = "drop/"
retention_days = -1
password_env = "FLOWS_TEST_UNSET_VARIABLE"
password_file = "/run/secrets/partner"

[flows.wrong-way]
kind = "pull"
source = "s3://bucket/in/"
destination = "/srv/out/"
every = "5m"
host_key = "MD5:aa"
"""

EXPECTED = [
    (3, 'defaults: "source" belongs in a flow, not in [defaults]'),
    (9, "flows.partner-drop: schedule: bad cron expression '*/15 * * *': expected 5 fields"),
    (10, 'flows.partner-drop: unknown key "setle" (did you mean "settle"?)'),
    (11, "flows.partner-drop: transfers: must be an integer, not a string"),
    (15, "flows.out: a push flow reads from s3://, not sftp://"),
    (16, "flows.out: a push flow writes to an sftp:// or local folder, not s3://"),
    (17, "flows.out: every: cannot read '10' as a duration (add a unit: 10s or 10m)"),
    (17, 'flows.out: both "schedule" and "every": give exactly one'),
    (19, 'flows.out: "archive" applies to pull flows only, this is a push flow'),
    (20, "flows.out: part_size must be between 5MiB and 5GiB, not 1024 bytes"),
    (21, "flows.out: checksum must be one of crc32c, crc64nvme, sha256, none, not 'md5'"),
    (23, 'flows."no dest": missing "destination"'),
    (23, 'flows."no dest": missing "schedule"'),
    (26, 'flows."no dest": retention_days: must not be negative, not -1'),
    (28, 'flows."no dest": both "password_env" and "password_file": give one'),
    (32, "flows.wrong-way: a pull flow reads from an sftp:// or local folder it can archive into, not s3://"),
    (33, "flows.wrong-way: a pull flow writes to s3://, not a local path"),
    (35, "flows.wrong-way: host_key: must be a SHA256:... fingerprint"),
]


def test_check_reports_every_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    path.write_text(BAD)
    result = run_cli("run", "--check", str(path))
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if ": warning: " not in line and not line.startswith("s3ferry: ")]
    assert len(errors) == len(EXPECTED), "\n".join(lines)
    for (number, message), line in zip(EXPECTED, errors):
        assert line.startswith(f"{path}:{number}: {message}"), (number, message, line)
    # --check only warns about what may exist on the machine the flows run on
    assert f"{path}:27: flows.\"no dest\": warning: password_env FLOWS_TEST_UNSET_VARIABLE is not set" in lines
    assert f"{path}:28: flows.\"no dest\": warning: password_file /run/secrets/partner does not exist" in lines
    assert lines[-1] == f"s3ferry: error: {path}: {len(EXPECTED)} errors; nothing was run"


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    path.write_text('[flows.a]\nkind = "pull"\nsource = "x" "y"\n')
    result = run_cli("run", "--check", str(path))
    assert result.code == 2
    assert result.stderr.startswith(f"{path}:3: TOML syntax error: ")
    assert result.stderr.splitlines()[-1] == f"s3ferry: error: {path}: 1 error; nothing was run"


def test_unreadable_or_empty_files(tmp_path: Path) -> None:
    missing = run_cli("run", "--check", str(tmp_path / "nope.toml"))
    assert missing.code == 2 and "cannot read the flows file" in missing.stderr
    (tmp_path / "empty.toml").write_text("[defaults]\nretries = 3\n")
    empty = run_cli("run", "--check", str(tmp_path / "empty.toml"))
    assert empty.code == 2 and "no [flows.NAME] table" in empty.stderr


def test_inline_secrets_are_refused_and_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    path.write_text("""\
[defaults]
aws_secret_access_key = "AKIAsecretvalue42"

[flows.x]
kind = "pull"
source = "sftp://etl@partner.example.com/out"
destination = "s3://raw/partner/"
every = "10m"
password = "hunter2-inline"

[flows.y]
kind = "pull"
source = "sftp://etl:hunter3-in-url@partner.example.com/out"
destination = "s3://raw/partner/"
every = "10m"
""")
    result = run_cli("run", "--check", str(path))
    assert result.code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}:2: defaults: refusing the inline secret 'aws_secret_access_key'")
    assert "profile" in lines[0]
    assert lines[1].startswith(f"{path}:9: flows.x: refusing the inline secret 'password'")
    assert 'password_env = "VAR"' in lines[1] and "password_file" in lines[1]
    assert lines[2] == (f"{path}:13: flows.y: source: refusing a password inside the URL: use password_env "
                        "or password_file")
    for secret in ("AKIAsecretvalue42", "hunter2-inline", "hunter3-in-url"):
        assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize("name", ["partner-drop.toml", "outbox.toml"])
def test_examples_are_valid(name: str) -> None:
    result = run_cli("run", "--check", str(EXAMPLES / name))
    assert result.code == 0, result.stderr
    flows = flowfile.load(EXAMPLES / name, require_env=False).flows
    assert len(flows) == 2 and len(result.stdout.splitlines()) == 2
    for flow, line in zip(flows.values(), result.stdout.splitlines()):
        assert line.startswith(f"{flow.name}: {flow.kind} {flow.source} -> {flow.destination}, ")
    # the key files and password variables they name do not exist here: warnings, not errors
    assert all(": warning: " in line for line in result.stderr.splitlines())


def test_flows_are_typed_and_defaults_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keys").mkdir()
    path = tmp_path / "flows.toml"
    path.write_text("""\
[defaults]
state_dir = "state"
every = "1h"
settle = "2m"          # pull only: push flows ignore it
part_size = "16MiB"
identity = "keys/id"

[flows.in]
kind = "pull"
source = "drop/"
destination = "s3://raw/in/"
include = ["*.csv.gz", "*.json"]
exclude = ["tmp/*"]
retention_days = 7.5
password_env = "FLOWS_TEST_PASSWORD"
storage_class = "STANDARD_IA"
bwlimit = "50M"
jump = "me@bastion.example.com"

[flows.out]
kind = "push"
source = "s3://outbox/p/"
destination = "sftp://me@host.example.com:2222/inbox/"
schedule = "0 3 * * sun"
part_size = 8388608
retry_failed = true
password_file = "secret.txt"
""")
    monkeypatch.setenv("FLOWS_TEST_PASSWORD", "from-env")
    loaded = flowfile.load(path)
    assert loaded.errors == []
    flow_in, flow_out = loaded.flows["in"], loaded.flows["out"]
    assert flow_in.kind == "pull" and str(flow_in.source) == f"{tmp_path}/drop/"
    assert isinstance(flow_in.schedule, Every) and flow_in.schedule.seconds == 3600
    assert isinstance(flow_out.schedule, Cron) and str(flow_out.schedule) == 'cron "0 3 * * sun" (UTC)'
    assert flow_in.options.state_dir == tmp_path / "state"
    assert flow_in.options.part_size == 16 * MiB and flow_out.options.part_size == 8 * MiB
    assert flow_in.options.sftp.identity == (tmp_path / "keys/id",)
    assert flow_in.options.s3.storage_class == "STANDARD_IA" and flow_in.options.bwlimit == 50 * MiB
    assert flow_in.options.sftp.jump == "me@bastion.example.com"
    assert isinstance(flow_in.settings, PullSettings)
    assert (flow_in.settings.settle, flow_in.settings.retention_days) == (120.0, 7.5)
    assert flow_out.settings.retry_failed and not isinstance(flow_out.settings, PullSettings)
    # include = only these; exclude removes from them
    assert [selected(p, flow_in.settings.filters) for p in ("a.csv.gz", "x/b.json", "tmp/c.csv.gz", "d.txt")] == [
        True, True, False, False]
    # password_env is read when a connection needs it, never stored
    assert flow_in.options.sftp.password() == "from-env"
    assert "from-env" not in repr(flow_in)
    monkeypatch.setenv("FLOWS_TEST_PASSWORD", "rotated")
    assert flow_in.options.sftp.password() == "rotated"
    assert flow_out.options.sftp.password_file == tmp_path / "secret.txt"
    # missing files are warnings
    assert [p.message for p in loaded.warnings] == [f"identity {tmp_path}/keys/id does not exist",
                                                   f"password_file {tmp_path}/secret.txt does not exist"]
    # an unset password_env is an error for the flows about to run, a warning for the others
    monkeypatch.delenv("FLOWS_TEST_PASSWORD")
    assert [p.message for p in flowfile.load(path).errors] == ["password_env FLOWS_TEST_PASSWORD is not set"]
    assert flowfile.load(path, require_env=frozenset({"out"})).errors == []


OBJECT_SETTINGS_BAD = """\
[defaults]
tags = { "aws:owner" = "etl" }

[flows.in]
kind = "pull"
source = "drop/"
destination = "s3://raw/in/"
every = "1h"
tags = { "cost center!" = "x" }
metadata = { batch = 42 }
storage_class = 3

[flows.out]
kind = "push"
source = "s3://outbox/p/"
destination = "sftp://me@host.example.com/inbox/"
every = "1h"
metadata = { owner = "etl" }
acl = "private"

[flows.sectioned]
kind = "pull"
source = "drop/"
destination = "s3://raw/s/"
every = "1h"

[flows.sectioned.tags]
team = "data"
"Team" = "twice is fine: tag keys are case-sensitive"
"" = "empty"
"""


def test_check_reports_bad_object_settings_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    path.write_text(OBJECT_SETTINGS_BAD)
    result = run_cli("run", "--check", str(path))
    assert result.code == 2, result.stderr
    assert result.stderr.splitlines() == [
        # the rules are those of `pull --tag` / `--metadata` (s3ferry.options.check_tags / check_metadata)
        f"{path}:2: defaults: tags key 'aws:owner': the aws: prefix is reserved for AWS",
        f"{path}:9: flows.in: tags 'cost center!': S3 allows letters, digits, spaces and _ . : / = + - @ in tags, "
        "not '!'",
        f"{path}:10: flows.in: metadata: the value of 'batch' must be a string, not an integer (quote it)",
        f"{path}:11: flows.in: storage_class: must be a string, not an integer",
        f"{path}:18: flows.out: \"metadata\" applies to flows whose destination is S3 (pull flows), not to a push "
        "flow",
        f"{path}:19: flows.out: \"acl\" applies to flows whose destination is S3 (pull flows), not to a push flow",
        f"{path}:27: flows.sectioned: tags key must not be empty",  # the line of its [section]
        f"s3ferry: error: {path}: 7 errors; nothing was run"]
    # the same rules on the command line
    for flag, value, message in (("--tag", "aws:owner=etl", "--tag key 'aws:owner': the aws: prefix is reserved"),
                                 ("--tag", "cost center!=x", "--tag 'cost center!': S3 allows letters"),
                                 ("--metadata", "a b=1", "--metadata key 'a b' cannot be an HTTP header name")):
        cli = run_cli("pull", "drop/", "s3://raw/in/", flag, value, "--dry-run")
        assert cli.code == 2 and f"s3ferry: error: {message}" in cli.stderr, cli.stderr


def test_object_settings_are_typed_and_replace_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    path.write_text("""\
[defaults]
every = "1h"
metadata = { owner = "etl" }
tags = { team = "data" }       # push flows ignore the object settings of [defaults]

[flows.in]
kind = "pull"
source = "drop/"
destination = "s3://raw/in/"
metadata = { batch = "42", origin = "partner" }
storage_class = "STANDARD_IA"
content_type = "text/csv"
acl = "bucket-owner-full-control"

[flows.plain]
kind = "pull"
source = "drop/"
destination = "s3://raw/plain/"

[flows.out]
kind = "push"
source = "s3://outbox/p/"
destination = "out/"
""")
    loaded = flowfile.load(path)
    assert loaded.problems == []
    s3 = loaded.flows["in"].options.s3
    assert s3.metadata == (("batch", "42"), ("origin", "partner"))  # a flow's own table replaces the default's
    assert s3.tags == (("team", "data"),)
    assert (s3.storage_class, s3.content_type, s3.acl) == ("STANDARD_IA", "text/csv", "bucket-owner-full-control")
    assert loaded.flows["plain"].options.s3.metadata == (("owner", "etl"),)
    assert loaded.flows["out"].options.s3.tags == ()


def test_line_index_handles_quoted_names_and_inline_tables(tmp_path: Path) -> None:
    text = ('title = 1\n[flows]\n"in line" = { kind = "pull" }\n\n[flows."a.b"]\n# comment\nkind = "x"\n'
            '"settle" = 3\n[flows.c.sub]\nq = 1\n')
    index = flowfile.LineIndex(text)
    assert index.key((), "title") == 1
    assert index.table(("flows", "in line")) == 3
    assert index.key(("flows", "in line"), "kind") == 3
    assert index.table(("flows", "a.b")) == 5
    assert index.key(("flows", "a.b"), "kind") == 7
    assert index.key(("flows", "a.b"), "settle") == 8
    assert index.key(("flows", "a.b"), "absent") == 5
    assert index.table(("flows", "c", "sub")) == 9


def test_unset_password_env_fails_the_run_before_anything_starts(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    path.write_text("""\
[flows.a]
kind = "pull"
source = "drop/"
destination = "s3://raw-bucket/in/"
every = "1h"
password_env = "FLOWS_TEST_UNSET_VARIABLE"
""")
    result = run_cli("run", "--once", str(path))
    assert result.code == 2
    assert result.stderr.splitlines() == [
        f"{path}:6: flows.a: password_env FLOWS_TEST_UNSET_VARIABLE is not set",
        f"s3ferry: error: {path}: 1 error; nothing was run"]
    unknown = run_cli("run", "--once", "--flow", "zz", str(path), env={"FLOWS_TEST_UNSET_VARIABLE": "x"})
    assert unknown.code == 2 and "no flow named 'zz'" in unknown.stderr


def test_lock_names_are_file_safe(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    names = {"plain-name_1.x": "plain-name_1.x", "../etc/passwd": None, "a b": None, ".hidden": None}
    body = "".join(f'[flows.{json.dumps(n)}]\nkind = "pull"\nsource = "d/"\ndestination = "s3://bbb/k/"\n'
                   f'every = "1h"\n' for n in names)
    path.write_text(body)
    loaded = flowfile.load(path)
    assert loaded.errors == []
    for name, expected in names.items():
        lock = loaded.flows[name].lock_name
        assert "/" not in lock and not lock.startswith(".") and lock.isascii()
        if expected:
            assert lock == expected


# -- running ----------------------------------------------------------------------------------------------------


def pull_flow(name: str, source: str, bucket: str, endpoint: str, ssh: testbed.SshServer | None = None,
              every: str = "1h") -> str:
    keys = (f'identity = "{ssh.user_key}"\nknown_hosts = "{ssh.known_hosts}"\n' if ssh else "")
    return (f'[flows.{name}]\nkind = "pull"\nsource = "{source}"\ndestination = "s3://{bucket}/in/"\n'
            f'every = "{every}"\nendpoint_url = "{endpoint}"\n{keys}')


def json_lines(text: str) -> list[dict]:
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


def run_while_held(tmp_path: Path, mode: str) -> tuple[Any, dict[str, Any], Path]:
    """``run MODE --json`` of flow "held" while its lock is held (as another s3ferry process would hold it)."""
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("held", str(tmp_path / "drop"), "some-bucket", "http://127.0.0.1:9"))
    state = tmp_path / "state"
    lock = state / "locks" / "flow-held.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("run", mode, "--json", "--state-dir", str(state), str(path))
    finally:
        os.close(fd)
    assert result.code == 0, result.stderr
    assert result.stderr == f"s3ferry: flow held: skipped: another run of it holds {lock}\n"
    (line,) = json_lines(result.stdout)
    return result, line, path


def test_a_locked_flow_is_skipped_with_a_note(tmp_path: Path) -> None:
    _, line, _ = run_while_held(tmp_path, "--once")
    assert (line["flow"], line["status"], line["reason"], line["exit_code"]) == ("held", "skipped", "locked", 0)
    assert "copied" not in line


@pytest.mark.usefixtures("s3_env")
def test_run_once_pulls_over_sftp(tmp_path: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                  bucket: str) -> None:
    drop = ssh.root / f"flow-drop-{bucket}"
    files = {"a.csv.gz": 1000, "sub/b.csv.gz": 6 * MiB + 1, "skip.tmp": 10}
    digests = {}
    for rel, size in files.items():
        (drop / rel).parent.mkdir(parents=True, exist_ok=True)
        digests[rel] = write_random(drop / rel, size)
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("partner-drop", ssh.url(drop), bucket, s3.endpoint, ssh)
                    + 'include = ["*.csv.gz"]\n' + f'\n[flows.other]\nkind = "pull"\nsource = "nowhere/"\n'
                    f'destination = "s3://{bucket}/other/"\nevery = "1h"\n')
    result = run_cli("run", "--once", "--flow", "partner-drop", str(path))
    assert result.code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"partner-drop: pull {ssh.url(drop)} -> s3://{bucket}/in/: 2 copied, 2 archived")
    for rel in ("a.csv.gz", "sub/b.csv.gz"):
        assert object_sha256(s3, bucket, f"in/{rel}") == digests[rel]
        assert (drop / Path(rel).parent / ".done" / Path(rel).name).exists()
    assert (drop / "skip.tmp").exists()  # not included
    again = run_cli("run", "--once", "--json", "--flow", "partner-drop", str(path))
    assert again.code == 0, again.stderr
    (report,) = json_lines(again.stdout)
    assert (report["flow"], report["kind"], report["copied"], report["failed"]) == ("partner-drop", "pull", 0, 0)


@pytest.mark.usefixtures("s3_env")
def test_run_once_exits_with_the_worst_flow(tmp_path: Path, s3: testbed.SeaweedServer, bucket: str) -> None:
    (tmp_path / "good").mkdir()
    write_random(tmp_path / "good" / "x.bin", 100)
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("good", "good/", bucket, s3.endpoint)
                    + pull_flow("no-bucket", "good/", "no-such-bucket-here", s3.endpoint))
    result = run_cli("run", "--once", "--json", str(path))
    assert result.code == 2, result.stderr
    by_flow = {r["flow"]: r for r in json_lines(result.stdout)}
    assert by_flow["good"]["copied"] == 1 and by_flow["good"]["failed"] == 0
    assert by_flow["good"]["status"] == "ok" and by_flow["no-bucket"]["status"] == "failed"
    assert by_flow["no-bucket"]["exit_code"] == 2 and "no-such-bucket-here" in by_flow["no-bucket"]["error"]
    assert "s3ferry: error: flow no-bucket: " in result.stderr


@pytest.mark.usefixtures("s3_env")
def test_two_runs_at_once_never_copy_a_file_twice(tmp_path: Path, ssh: testbed.SshServer,
                                                   s3: testbed.SeaweedServer, bucket: str) -> None:
    drop = ssh.root / f"flow-race-{bucket}"
    drop.mkdir()
    count = 12
    digests = {f"f{i:02}.bin": write_random(drop / f"f{i:02}.bin", 256 * 1024) for i in range(count)}
    path = tmp_path / "flows.toml"
    with S3FaultProxy(s3.s3_port) as proxy:
        path.write_text(pull_flow("race", ssh.url(drop), bucket, proxy.url, ssh) + "transfers = 2\n")
        procs = [start_run("--once", "--json", str(path)) for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        puts = proxy.count("PutObject", 200) + proxy.count("CreateMultipartUpload", 200)
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    reports = [r for out, _ in outputs for r in json_lines(out)]
    assert len(reports) == 2
    assert sum(r.get("copied", 0) for r in reports) == count
    assert puts == count  # every file went to S3 exactly once
    # one of the two held the lock; the other was skipped, or came after it and found nothing left
    assert any((r["status"] == "skipped" and r["reason"] == "locked") or r["copied"] == 0 for r in reports), reports
    for rel, digest in digests.items():
        assert object_sha256(s3, bucket, f"in/{rel}") == digest
        assert (drop / ".done" / rel).exists()


@pytest.mark.usefixtures("s3_env")
def test_scheduler_runs_a_flow_each_interval_until_sigterm(tmp_path: Path, s3: testbed.SeaweedServer,
                                                           bucket: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    write_random(drop / "first.bin", 1000)
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("tick", "drop/", bucket, s3.endpoint, every="1s"))
    port = testbed.free_port()
    proc = start_run("--json", "--metrics-port", str(port), str(path))
    try:
        reader = LineReader(proc.stdout)
        started = time.monotonic()
        first = reader.next_report(timeout=60)
        assert (first["flow"], first["copied"]) == ("tick", 1)
        # what the runs count carries the flow's name
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 's3ferry_flow_last_success_timestamp_seconds{flow="tick"}' in scraped
        assert 's3ferry_files_total{flow="tick",result="copied"} 1.0' in scraped
        # a file dropped between runs is picked up by a later one (written aside, then renamed in)
        write_random(tmp_path / "second.bin", 2000)
        os.rename(tmp_path / "second.bin", drop / "second.bin")
        later = [reader.next_report(timeout=60)]
        while sum(r["copied"] for r in later) < 1 and len(later) < 30:
            later.append(reader.next_report(timeout=60))
        assert sum(r["copied"] for r in later) == 1, later
        elapsed = time.monotonic() - started
        assert all(r["failed"] == 0 for r in [first, *later])
        # runs start a second apart: not more often
        assert elapsed >= len(later) - 0.5
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith("s3ferry: interrupted")
    assert object_sha256(s3, bucket, "in/second.bin")


@pytest.mark.usefixtures("s3_env")
def test_a_flow_still_running_at_its_next_time_is_not_started_twice(tmp_path: Path, s3: testbed.SeaweedServer,
                                                                    bucket: str) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    digest = write_random(drop / "big.bin", 9 * MiB)  # two parts: completed by CompleteMultipartUpload
    path = tmp_path / "flows.toml"
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.hold_complete = threading.Event()  # the first run hangs at completion
        path.write_text(pull_flow("slow", "drop/", bucket, proxy.url, every="1s"))
        proc = start_run("--json", str(path))
        try:
            out, err = LineReader(proc.stdout), LineReader(proc.stderr)
            assert proxy.complete_seen.wait(60), err.seen
            note = err.wait_for("still running", timeout=30)
            assert note.startswith("s3ferry: flow slow: still running at its next time ")
            skip = out.next_json(timeout=30)
            assert (skip["flow"], skip["status"], skip["reason"]) == ("slow", "skipped", "running")
            assert skip["destination"] == f"s3://{bucket}/in/"
            assert "copied" not in skip
            proxy.hold_complete.set()
            first = out.next_report(timeout=60)
            assert (first["copied"], first["failed"]) == (1, 0)
            assert out.next_report(timeout=30)["copied"] == 0  # the next tick runs again, finds nothing
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            stop(proc)
        assert proc.returncode == 130
        assert proxy.count("CreateMultipartUpload") == 1  # never a second upload while the first ran
    assert object_sha256(s3, bucket, "in/big.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_run_once_pushes_to_sftp(tmp_path: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                 bucket: str) -> None:
    client = s3.client()
    bodies = {"r1.pdf": os.urandom(5000), "sub/r2.csv": os.urandom(70_000), "ignore.log": b"x"}
    for rel, body in bodies.items():
        client.put_object(Bucket=bucket, Key=f"outbox/{rel}", Body=body)
    inbox = ssh.root / f"flow-inbox-{bucket}"
    inbox.mkdir()
    path = tmp_path / "flows.toml"
    path.write_text(f"""\
[defaults]
identity = "{ssh.user_key}"
known_hosts = "{ssh.known_hosts}"
endpoint_url = "{s3.endpoint}"

[flows.reports]
kind = "push"
source = "s3://{bucket}/outbox/"
destination = "{ssh.url(inbox)}/"
schedule = "*/10 * * * *"
exclude = ["*.log"]
""")
    result = run_cli("run", "--once", "--json", str(path))
    assert result.code == 0, result.stderr
    (report,) = json_lines(result.stdout)
    assert (report["flow"], report["kind"], report["copied"], report["failed"]) == ("reports", "push", 2, 0)
    for rel in ("r1.pdf", "sub/r2.csv"):
        assert (inbox / rel).read_bytes() == bodies[rel]
    assert not (inbox / "ignore.log").exists()
    again = run_cli("run", "--once", "--json", str(path))
    assert again.code == 0, again.stderr
    (report,) = json_lines(again.stdout)
    assert report["copied"] == 0


@pytest.mark.usefixtures("s3_env")
def test_run_once_sets_the_flows_object_settings(tmp_path: Path, ssh: testbed.SshServer,
                                                 s3: testbed.SeaweedServer, bucket: str) -> None:
    drop = ssh.root / f"flow-settings-{bucket}"
    drop.mkdir()
    write_random(drop / "small.csv", 1000)
    write_random(drop / "big.bin", 9 * MiB)  # multipart: the settings go on CreateMultipartUpload
    path = tmp_path / "flows.toml"
    path.write_text(pull_flow("tagged", ssh.url(drop), bucket, s3.endpoint, ssh) + """\
storage_class = "STANDARD_IA"
metadata = { owner = "etl", batch = "42" }
tags = { team = "data", "cost-center" = "cc 7/a" }
""")
    result = run_cli("run", "--once", str(path))
    assert result.code == 0, result.stderr
    assert "2 copied, 2 archived" in result.stdout
    client = s3.client()
    for name, content_type in (("small.csv", "text/csv"), ("big.bin", "application/octet-stream")):
        head = client.head_object(Bucket=bucket, Key=f"in/{name}")
        assert head.get("StorageClass") == "STANDARD_IA"
        assert head["ContentType"] == content_type  # guessed from the name, as `pull` does
        assert head["Metadata"]["owner"] == "etl" and head["Metadata"]["batch"] == "42"
        assert head["Metadata"]["s3ferry-source-size"] == str((drop / ".done" / name).stat().st_size)  # kept
        tags = client.get_object_tagging(Bucket=bucket, Key=f"in/{name}")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"team": "data", "cost-center": "cc 7/a"}


def test_a_dry_run_takes_the_flow_lock(tmp_path: Path) -> None:
    _, line, path = run_while_held(tmp_path, "--dry-run")
    assert (line["flow"], line["status"], line["reason"], line["dry_run"]) == ("held", "skipped", "locked", True)
    both = run_cli("run", "--dry-run", "--check", str(path))
    assert both.code == 2 and "give one of them" in both.stderr


@pytest.mark.usefixtures("s3_env")
def test_dry_run_of_a_pull_flow_changes_nothing(tmp_path: Path, ssh: testbed.SshServer,
                                                s3: testbed.SeaweedServer, bucket: str) -> None:
    drop = ssh.root / f"flow-dry-{bucket}"
    for rel, size in {"a.csv.gz": 1000, "sub/b.csv.gz": 3000, "skip.tmp": 10}.items():
        (drop / rel).parent.mkdir(parents=True, exist_ok=True)
        write_random(drop / rel, size)
    s3.client().put_object(Bucket=bucket, Key="in/already.txt", Body=b"x")
    path = tmp_path / "flows.toml"
    # a schedule every second and no --once: a dry run is still one pass, then the process exits
    path.write_text(pull_flow("dry", ssh.url(drop), bucket, s3.endpoint, ssh, every="1s")
                    + 'include = ["*.csv.gz"]\nmetadata = { owner = "etl" }\n')

    def files() -> list[tuple[str, int, float]]:
        return sorted((str(p.relative_to(drop)), p.stat().st_size, p.stat().st_mtime)
                      for p in drop.rglob("*"))

    def listing() -> list[tuple[str, int]]:
        found = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted((o["Key"], o["Size"]) for o in found)

    before = (files(), listing())
    result = run_cli("run", "--dry-run", str(path), timeout=120)
    assert result.code == 0, result.stderr
    assert result.stdout == (f"dry: pull {ssh.url(drop)} -> s3://{bucket}/in/: 2 would copy, 2 archived "
                             "(dry run: nothing changed)\n")
    as_json = run_cli("run", "--dry-run", "--json", str(path), timeout=120)
    assert as_json.code == 0, as_json.stderr
    (report,) = json_lines(as_json.stdout)
    assert (report["flow"], report["status"], report["dry_run"], report["copied"]) == ("dry", "ok", True, 2)
    # the keys of `pull --dry-run --json`, plus the flow's
    pulled = run_cli("pull", "--dry-run", "--json", "--include", "*.csv.gz", *sftp_flags(ssh), ssh.url(drop),
                     f"s3://{bucket}/in/")
    assert pulled.code == 0, pulled.stderr
    assert set(report) == set(json.loads(pulled.stdout)) | {"flow", "started", "status", "exit_code"}
    assert (files(), listing()) == before

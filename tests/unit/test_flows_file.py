"""s3ferry run without a server: flows files (validation with line numbers), schedules, lock names and held locks."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from s3ferry.core.errors import UsageError
from s3ferry.jobs import flowfile
from s3ferry.jobs.pull import PullSettings
from s3ferry.jobs.schedule import Cron, Every, parse_duration
from s3ferry.operations.tree import selected
from support.helpers import MiB, json_lines, pull_flow, run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


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
    for (number, message), line in zip(EXPECTED, errors, strict=True):
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
    for flow, line in zip(flows.values(), result.stdout.splitlines(), strict=True):
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
    assert not isinstance(flow_out.settings, PullSettings) and flow_out.settings.retry_failed
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


def test_a_dry_run_takes_the_flow_lock(tmp_path: Path) -> None:
    _, line, path = run_while_held(tmp_path, "--dry-run")
    assert (line["flow"], line["status"], line["reason"], line["dry_run"]) == ("held", "skipped", "locked", True)
    both = run_cli("run", "--dry-run", "--check", str(path))
    assert both.code == 2 and "give one of them" in both.stderr

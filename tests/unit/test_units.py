"""Pure logic: URL parsing, sizes and part planning, checksum combination, FTP LIST lines."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from datetime import UTC, datetime

import pytest
from awscrt import checksums as crt

from s3ferry.backends.ftp import _parse_list_line, _parse_listing
from s3ferry.core import checksums
from s3ferry.core.errors import TransferError, UsageError
from s3ferry.core.options import GiB, MiB, TransferOptions, parse_size
from s3ferry.core.urls import join_name, parse, redact
from s3ferry.engine.transfer import plan_parts


def test_parse_sftp_url() -> None:
    loc = parse("sftp://alice@example.com:2222/data/file one.csv")
    assert (loc.scheme, loc.user, loc.host, loc.port, loc.path) == ("sftp", "alice", "example.com", 2222,
                                                                  "/data/file one.csv")
    assert loc.name == "file one.csv"
    assert str(loc) == "sftp://alice@example.com:2222/data/file one.csv"
    assert parse("sftp://alice@example.com/data/file%20one.csv").path == "/data/file%20one.csv"  # literal


def test_parse_s3_and_local() -> None:
    loc = parse("s3://bucket/a/b/")
    assert (loc.bucket, loc.path, loc.is_dir_like) == ("bucket", "a/b/", True)
    assert parse("s3://bucket").path == ""
    assert parse("/tmp/x.bin").path == "/tmp/x.bin"
    assert parse("file:///tmp/x.bin").path == "/tmp/x.bin"
    assert parse("relative/dir/").is_dir_like


@pytest.mark.parametrize("text", ["sftp://u:secret@h/x", "gopher://h/x", "ftp://u:pw@h/x", "http://u:pw@h/x",
                                  "s3://", "s3://a/x", "sftp://h:99999/x", "sftp://h?x/y", "s3://bu?ck/x",
                                  "file://remote/x", ""])
def test_bad_urls(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    assert "secret" not in str(info.value)


def test_redact() -> None:
    assert redact("sftp://u:pw@h:22/x") == "sftp://u:***@h:22/x"
    assert redact("sftp://u@h/x") == "sftp://u@h/x"
    assert redact("/plain/path") == "/plain/path"


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x", "a\\b", "x\0y"])
def test_join_name_refuses_hostile_names(name: str) -> None:
    with pytest.raises(UsageError):
        join_name(parse("s3://bucket/in/"), name)


def test_join_name() -> None:
    assert join_name(parse("s3://bucket/in/"), "a.csv").path == "in/a.csv"


@pytest.mark.parametrize("text,value", [("4096", 4096), ("8MiB", 8 * MiB), ("8M", 8 * MiB), ("1.5G", 3 * GiB // 2),
                                        ("64k", 65536), (7, 7)])
def test_parse_size(text: str | int, value: int) -> None:
    assert parse_size(text) == value


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(UsageError):
        parse_size("lots")


def test_part_size_grows_to_fit_ten_thousand_parts() -> None:
    opts = TransferOptions()
    assert opts.part_size_for(2 * GiB) == 8 * MiB
    huge = 5 * 1024 * GiB  # 5 TiB
    size = opts.part_size_for(huge)
    assert size % MiB == 0 and -(-huge // size) <= 10_000
    assert len(plan_parts(huge, size)) <= 10_000


def test_options_validation() -> None:
    with pytest.raises(UsageError):
        TransferOptions(part_size=4 * MiB)
    with pytest.raises(UsageError):
        TransferOptions(read_streams=0)
    with pytest.raises(UsageError):
        TransferOptions().replace(no_such_option=1)
    assert TransferOptions().replace(upload_streams=9).upload_streams == 9


def test_memory_budget_buys_at_least_two_buffers() -> None:
    opts = TransferOptions()
    assert opts.buffer_count(8 * MiB) == 4
    assert opts.buffer_count(256 * MiB) == 2


@pytest.mark.parametrize("size,part", [(0, 5), (1, 5), (5, 5), (6, 5), (10 * MiB + 3, MiB)])
def test_plan_parts_cover_the_file_exactly(size: int, part: int) -> None:
    parts = plan_parts(size, part)
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))
    assert sum(p.length for p in parts) == size
    offset = 0
    for p in parts:
        assert p.offset == offset and 0 <= p.length <= part
        offset += p.length


@pytest.mark.parametrize("algorithm,direct,width", [(checksums.CRC32C, crt.crc32c, 4),
                                                    (checksums.CRC64NVME, crt.crc64nvme, 8)])
def test_crc_combine_equals_crc_of_the_whole(algorithm: checksums._Crc, direct: object, width: int) -> None:
    rng = random.Random(7)
    for _ in range(20):
        pieces = [os.urandom(rng.choice([0, 1, 3, 1000, 65536, 100_001])) for _ in range(rng.randint(1, 6))]
        digests = [checksums.PartDigest(algorithm.part(p), len(p)) for p in pieces]
        whole = direct(b"".join(pieces))  # type: ignore[operator]
        expected = base64.b64encode(whole.to_bytes(width, "big")).decode()
        assert algorithm.whole(digests, single=len(pieces) == 1) == expected


def test_sha256_composite_form() -> None:
    parts = [b"a" * 10, b"b" * 3]
    digests = [checksums.PartDigest(hashlib.sha256(p).digest(), len(p)) for p in parts]
    expected = base64.b64encode(hashlib.sha256(b"".join(d.digest for d in digests)).digest()).decode() + "-2"
    assert checksums.SHA256.whole(digests, single=False) == expected
    assert checksums.SHA256.whole(digests[:1], single=True) == digests[0].b64


def test_adaptive_limit_halves_on_slowdown_and_grows_back() -> None:
    import asyncio

    from s3ferry.engine.retry import AdaptiveLimit

    async def scenario() -> list[int]:
        limit = AdaptiveLimit(8, grow_after=2)
        seen = [limit.limit]
        await limit.throttled()
        seen.append(limit.limit)
        await limit.throttled()
        seen.append(limit.limit)
        for _ in range(4):
            await limit.succeeded()
        seen.append(limit.limit)
        return seen

    assert asyncio.run(scenario()) == [8, 4, 2, 4]


def test_adaptive_limit_bounds_concurrency() -> None:
    import asyncio

    from s3ferry.engine.retry import AdaptiveLimit

    async def scenario() -> int:
        limit = AdaptiveLimit(4)
        await limit.throttled()  # now 2
        peak = 0

        async def worker() -> None:
            nonlocal peak
            async with limit:
                peak = max(peak, limit.active)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(worker() for _ in range(10)))
        return peak

    assert asyncio.run(scenario()) == 2


def test_retry_policy_retries_only_retryable_errors() -> None:
    import asyncio

    from s3ferry.core.errors import AuthError, TransferError
    from s3ferry.engine.retry import RetryPolicy

    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransferError("connection reset")
        return "ok"

    async def denied() -> str:
        calls["n"] += 1
        raise AuthError("wrong password")

    policy = RetryPolicy(retries=5, base=0.001)
    assert asyncio.run(policy.run(flaky, "x")) == "ok" and calls["n"] == 3
    calls["n"] = 0
    with pytest.raises(AuthError):
        asyncio.run(policy.run(denied, "x"))
    assert calls["n"] == 1
    calls["n"] = 0
    with pytest.raises(TransferError):
        asyncio.run(RetryPolicy(retries=1, base=0.001).run(lambda: flaky(), "x"))
    assert calls["n"] == 2


@pytest.mark.parametrize("endpoint,forced,expected", [
    ("http://127.0.0.1:8333", None, False),
    ("http://localhost:9000", None, False),
    ("http://[::1]:9000", None, False),
    ("http://10.0.0.5:9000", None, None),   # plain http on a network: botocore signs
    ("https://s3.example.com", None, None),  # https: botocore's own default
    (None, None, None),                      # AWS
    ("http://127.0.0.1:8333", True, True),
    ("http://10.0.0.5:9000", False, False),
])
def test_payload_signing_policy(endpoint: str | None, forced: bool | None, expected: bool | None,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from s3ferry.core.options import S3Options

    assert S3Options(endpoint_url=endpoint, sign_payload=forced).payload_signing() is expected


@pytest.mark.parametrize(("jump", "expected"), [
    ("me@bastion:2222", ("bastion", 2222)),
    ("bastion", ("bastion", 22)),
    ("me@[::1]:2200", ("::1", 2200)),
    ("[fe80::1]", ("fe80::1", 22)),
    ("a@first:1,b@second:2", ("first", 1)),
])
def test_jump_address_takes_the_first_hop(jump: str, expected: tuple[str, int]) -> None:
    from s3ferry.backends.sftp.trust import jump_address

    assert jump_address(jump) == expected


# --- FTP LIST lines (servers without MLSD) ----------------------------------------------------

LISTED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("line,name,kind,size,mtime", [
    ("-rw-r--r-- 1 owner group 1234 Nov 21 12:00 name with spaces", "name with spaces", "file", 1234,
     _utc(2025, 11, 21, 12, 0)),
    ("-rw-r--r--   1 1000     1000         1234 Nov 21  2024 name", "name", "file", 1234, _utc(2024, 11, 21)),
    ("drwxr-xr-x    2 ftp      ftp          4096 Mar 01 09:05 folder", "folder", "dir", 4096,
     _utc(2026, 3, 1, 9, 5)),
    ("-rw-rw-r--+ 1 alice Domain Users 7 Jan  5 23:59 acl.txt", "acl.txt", "file", 7, _utc(2026, 1, 5, 23, 59)),
    ("-rw-r--r-- 1 owner 12 Feb 28 10:00  leading space", " leading space", "file", 12, _utc(2026, 2, 28, 10, 0)),
    ("-rw-r--r-- 1 o g 3 Nov 21 12:00 12 Nov 21 12:00 x", "12 Nov 21 12:00 x", "file", 3, _utc(2025, 11, 21, 12, 0)),
    ("lrwxrwxrwx 1 o g 7 Jan 01 00:00 link -> target", "link -> target", "link", 7, _utc(2026, 1, 1)),
    ("prw-r--r-- 1 o g 0 Jan 01 00:00 fifo", "fifo", "other", 0, _utc(2026, 1, 1)),
    ("11-21-25  12:00PM                 1234 name x", "name x", "file", 1234, _utc(2025, 11, 21, 12, 0)),
    ("11-21-25  09:03AM       <DIR>          folder", "folder", "dir", None, _utc(2025, 11, 21, 9, 3)),
    ("03-01-2026  13:05                    7 f", "f", "file", 7, _utc(2026, 3, 1, 13, 5)),
    ("12-31-99  12:00AM                    5 y2k", "y2k", "file", 5, _utc(1999, 12, 31)),
])
def test_ftp_list_lines(line: str, name: str, kind: str, size: int | None, mtime: float) -> None:
    item = _parse_list_line(line, LISTED_AT)
    assert item is not None and (item.name, item.kind, item.size, item.mtime) == (name, kind, size, mtime)


@pytest.mark.parametrize("when,year", [
    ("Mar 11 11:00", 2026),  # less than a day ahead: clock skew or time zones, still this year
    ("Mar 11 12:01", 2025),  # more than a day ahead: last year's
    ("Dec 31 23:59", 2025),
    ("Jan 01 00:00", 2026),
])
def test_ftp_list_year_of_recent_files(when: str, year: int) -> None:
    item = _parse_list_line(f"-rw-r--r-- 1 o g 1 {when} f", LISTED_AT)
    assert item is not None and item.mtime is not None
    assert datetime.fromtimestamp(item.mtime, UTC).year == year


def test_ftp_list_leap_day_without_a_year() -> None:
    item = _parse_list_line("-rw-r--r-- 1 o g 1 Feb 29 08:00 f", datetime(2025, 3, 1, tzinfo=UTC))
    assert item is not None and item.mtime == _utc(2024, 2, 29, 8, 0)


def test_ftp_list_total_line_is_no_entry() -> None:
    assert _parse_list_line("total 48", LISTED_AT) is None
    assert [item.name for item in _parse_listing(["total 0", "-rw-r--r-- 1 o g 1 Mar 01 08:00 f"], "x")] == ["f"]


@pytest.mark.parametrize("line", [
    "garbage",
    "-rw-r--r-- 1 o g Nov 21 12:00 no size",
    "-rw-r--r-- 1 o g 5 Mär 21 12:00 localised month",
    "total",
])
def test_ftp_list_unreadable_line_stops_the_walk(line: str) -> None:
    with pytest.raises(TransferError) as info:
        _parse_listing(["-rw-r--r-- 1 o g 1 Mar 01 08:00 fine", line], "ftp://u@h/some dir")
    assert not info.value.retryable
    assert "ftp://u@h/some dir" in str(info.value) and repr(line) in str(info.value)


def test_a_dry_run_counts_no_files_in_the_metrics() -> None:
    from s3ferry.jobs import JobReport, record
    from s3ferry.observe import metrics

    def archived() -> float:
        return metrics.REGISTRY.get_sample_value("s3ferry_files_total", {"result": "archived",
                                                                        "flow": metrics.FLOW.get()}) or 0.0

    before = archived()
    record(JobReport("pull", "sftp://h/in", "s3://b/in/", archived=["a", "b"], dry_run=True))
    assert archived() == before
    record(JobReport("pull", "sftp://h/in", "s3://b/in/", archived=["a", "b"]))
    assert archived() == before + 2


@pytest.mark.parametrize("name", ["../x", ".f.bin.s3ferry-1234abcd.tmp/../../etc", "/etc/passwd",
                                  ".other.bin.s3ferry-1234abcd.tmp", ".f.bin.s3ferry-XYZ.tmp"])
def test_a_local_resume_opens_only_its_own_partial_file(tmp_path: os.PathLike[str], name: str) -> None:
    from s3ferry.backends.local import LocalSink
    from s3ferry.core.urls import parse as parse_location

    sink = LocalSink(parse_location(f"{tmp_path}/f.bin"))
    with pytest.raises(UsageError, match="cannot be"):
        sink.resume_writer(name, None)
    assert sink.resume_writer(".f.bin.s3ferry-1234abcd.tmp", None).upload_id == ".f.bin.s3ferry-1234abcd.tmp"

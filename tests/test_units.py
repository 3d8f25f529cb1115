"""Pure logic: URL parsing, sizes and part planning, checksum combination."""

from __future__ import annotations

import base64
import hashlib
import os
import random

import pytest
from awscrt import checksums as crt

from s3ferry import checksums
from s3ferry.engine import plan_parts
from s3ferry.errors import UsageError
from s3ferry.options import GiB, MiB, TransferOptions, parse_size
from s3ferry.urls import join_name, parse, redact


def test_parse_sftp_url() -> None:
    loc = parse("sftp://alice@example.com:2222/data/file%20one.csv")
    assert (loc.scheme, loc.user, loc.host, loc.port, loc.path) == ("sftp", "alice", "example.com", 2222,
                                                                  "/data/file one.csv")
    assert loc.name == "file one.csv"
    assert str(loc) == "sftp://alice@example.com:2222/data/file one.csv"


def test_parse_s3_and_local() -> None:
    loc = parse("s3://bucket/a/b/")
    assert (loc.bucket, loc.path, loc.is_dir_like) == ("bucket", "a/b/", True)
    assert parse("s3://bucket").path == ""
    assert parse("/tmp/x.bin").path == "/tmp/x.bin"
    assert parse("file:///tmp/x.bin").path == "/tmp/x.bin"
    assert parse("relative/dir/").is_dir_like


@pytest.mark.parametrize("text", ["sftp://u:secret@h/x", "gopher://h/x", "ftp://u:pw@h/x", "http://u:pw@h/x", "s3://", "s3://a/x", "sftp://h:99999/x",
                                  "sftp://h/x?y", "file://remote/x", ""])
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
        assert algorithm.whole(digests, single=len(pieces) == 1) == base64.b64encode(whole.to_bytes(width, "big")).decode()


def test_sha256_composite_form() -> None:
    parts = [b"a" * 10, b"b" * 3]
    digests = [checksums.PartDigest(hashlib.sha256(p).digest(), len(p)) for p in parts]
    expected = base64.b64encode(hashlib.sha256(b"".join(d.digest for d in digests)).digest()).decode() + "-2"
    assert checksums.SHA256.whole(digests, single=False) == expected
    assert checksums.SHA256.whole(digests[:1], single=True) == digests[0].b64


def test_adaptive_limit_halves_on_slowdown_and_grows_back() -> None:
    import asyncio

    from s3ferry.retry import AdaptiveLimit

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

    from s3ferry.retry import AdaptiveLimit

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

    from s3ferry.errors import AuthError, TransferError
    from s3ferry.retry import RetryPolicy

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
    from s3ferry.options import S3Options

    assert S3Options(endpoint_url=endpoint, sign_payload=forced).payload_signing() is expected

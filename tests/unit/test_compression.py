"""The compression stages (issue 19): round trips, determinism, the CLIs' formats, damaged input."""

from __future__ import annotations

import asyncio
import gzip
import random
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest

from s3ferry.core.errors import IntegrityError, UsageError
from s3ferry.core.options import TransferOptions
from s3ferry.engine.compression import Compress, Decompress, compress_stage
from s3ferry.engine.stages import Stage, chain, deterministic, renamed
from s3ferry.engine.transformed import destination_name, stages_for


def _csv(rows: int = 60_000, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    return b"".join(b"%d,%d,name%d,%s\n" % (i, rng.randrange(10**6), i % 977, b"x" * rng.randrange(5))
                    for i in range(rows))


DATA = _csv()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def run(stages: list[Stage], data: bytes, size: int = 1 << 20) -> bytes:
    async def collect() -> bytes:
        return b"".join([piece async for piece in chain(stages, _chunks(data, size))])
    return asyncio.run(collect())


def _cli(*argv: str, data: bytes) -> bytes:
    tool = shutil.which(argv[0])
    assert tool is not None, f"{argv[0]} is needed (apt-get install {argv[0]})"
    return subprocess.run([tool, *argv[1:]], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("spec", ["gzip", "gzip:1", "zstd", "zstd:19"])
def test_round_trip_and_the_same_bytes_whatever_the_chunking(spec: str) -> None:
    packed = run([compress_stage(spec)], DATA)
    assert run([compress_stage(spec)], DATA, size=12_345) == packed  # deterministic: resume relies on it
    assert len(packed) < len(DATA) // 2
    assert run([Decompress()], packed, size=777) == DATA


@pytest.mark.parametrize(("spec", "tool"), [("gzip", ["gzip", "-dc"]), ("zstd:5", ["zstd", "-dc"])])
def test_the_command_line_tools_read_what_we_write(spec: str, tool: list[str]) -> None:
    assert _cli(*tool, data=run([compress_stage(spec)], DATA)) == DATA


@pytest.mark.parametrize(("fmt", "tool"), [("gzip", ["gzip", "-c"]), ("zstd", ["zstd", "-c", "-T2", "-q"])])
def test_we_read_what_the_command_line_tools_write_several_members_included(fmt: str, tool: list[str]) -> None:
    packed = _cli(*tool, data=DATA)
    two = packed + _cli(*tool, data=b"second member\n")  # cat a.gz b.gz
    assert run([Decompress("auto")], two) == DATA + b"second member\n"
    assert run([Decompress("gzip" if fmt == "gzip" else "zstd")], two, size=4096) == DATA + b"second member\n"


@pytest.mark.parametrize("spec", ["gzip", "zstd"])
def test_truncated_input_is_an_integrity_error(spec: str) -> None:
    packed = run([compress_stage(spec)], DATA)
    for cut in (len(packed) - 1, len(packed) // 2, 10):
        with pytest.raises(IntegrityError, match=r"truncated|damaged"):
            run([Decompress()], packed[:cut])


@pytest.mark.parametrize("spec", ["gzip", "zstd"])
def test_a_changed_byte_is_an_integrity_error(spec: str) -> None:
    packed = bytearray(run([compress_stage(spec)], DATA))
    packed[len(packed) // 2] ^= 0x55
    with pytest.raises(IntegrityError):
        run([Decompress()], bytes(packed))


def test_input_of_another_format_is_refused() -> None:
    with pytest.raises(IntegrityError, match="not gzip or zstd"):
        run([Decompress()], DATA)
    with pytest.raises(IntegrityError, match="not zstd"):
        run([Decompress("zstd")], gzip.compress(DATA))
    with pytest.raises(IntegrityError, match="empty"):
        run([Decompress()], b"")


def test_chained_decompress_then_compress() -> None:
    gz = gzip.compress(DATA, mtime=0)
    stages = stages_for(TransferOptions(decompress="gzip", compress="zstd:9"))
    assert [s.name for s in stages] == ["ungzip", "zstd:9"] and deterministic(stages)
    assert _cli("zstd", "-dc", data=run(stages, gz)) == DATA
    assert renamed(stages, "a.csv.gz") == "a.csv.zst"


def test_names() -> None:
    assert Compress("gzip", 6).rename("a.csv") == "a.csv.gz"
    assert Compress("zstd", 3).rename("a.csv") == "a.csv.zst"
    assert Decompress().rename("a.csv.gz") == "a.csv"
    assert Decompress().rename("a.CSV.ZST") == "a.CSV"
    assert Decompress().rename("b.tgz") == "b.tar"
    assert Decompress().rename("plain") == "plain"
    assert Decompress("gzip").rename("a.zst") == "a.zst"
    assert destination_name(TransferOptions(compress="zstd"), "a.csv") == "a.csv.zst"
    assert destination_name(TransferOptions(compress="zstd", keep_name=True), "a.csv") == "a.csv"
    assert destination_name(TransferOptions(), "a.csv") == "a.csv"


@pytest.mark.parametrize("bad", ["lz4", "zstd:0", "zstd:23", "gzip:10", "gzip:x", "zstd:"])
def test_bad_compress_values(bad: str) -> None:
    with pytest.raises(UsageError):
        TransferOptions(compress=bad)
    with pytest.raises(UsageError):
        compress_stage(bad)

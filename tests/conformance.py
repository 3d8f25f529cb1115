"""One conformance suite that every source backend passes against its real server.

A backend joins by subclassing :class:`SourceConformance` in its own test
module (class name starting with ``Test``) and providing ``root`` (a local
folder whose files the backend's server serves) and ``make_source(path)``.
The local and SFTP backends run it in tests/test_conformance.py.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from s3ferry.backends.base import Source
from s3ferry.errors import NotFoundError, SourceChangedError, UsageError


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def stat_of(source: Source) -> Any:
    try:
        return await source.stat()
    finally:
        await source.close()


async def read_range(source: Source, offset: int, length: int) -> bytes:
    buf = bytearray(length)
    try:
        async with source.reader() as reader:
            await reader.read_into(offset, memoryview(buf))
    finally:
        await source.close()
    return bytes(buf)


class SourceConformance:
    SIZE = 3 * 1024 * 1024 + 12345  # several SFTP blocks and an odd tail

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        raise NotImplementedError

    def make_source(self, path: Path) -> Source:
        raise NotImplementedError

    @pytest.fixture
    def sample(self, root: Path) -> tuple[Path, bytes]:
        data = os.urandom(self.SIZE)
        path = root / "sample.bin"
        path.write_bytes(data)
        return path, data

    def test_stat(self, sample: tuple[Path, bytes]) -> None:
        path, data = sample
        st = run(stat_of(self.make_source(path)))
        assert st.size == len(data)
        assert st.mtime == pytest.approx(path.stat().st_mtime, abs=1)

    def test_full_read(self, sample: tuple[Path, bytes]) -> None:
        path, data = sample
        assert run(read_range(self.make_source(path), 0, len(data))) == data

    @pytest.mark.parametrize("offset,length", [(1, 1), (7, 262_143), (262_144, 262_145), (1_000_001, 1_234_567)])
    def test_ranged_reads_at_odd_offsets(self, sample: tuple[Path, bytes], offset: int, length: int) -> None:
        path, data = sample
        assert run(read_range(self.make_source(path), offset, length)) == data[offset : offset + length]

    def test_read_to_the_last_byte(self, sample: tuple[Path, bytes]) -> None:
        path, data = sample
        assert run(read_range(self.make_source(path), len(data) - 3, 3)) == data[-3:]

    def test_read_past_end_is_an_error(self, sample: tuple[Path, bytes]) -> None:
        path, data = sample
        with pytest.raises(SourceChangedError):
            run(read_range(self.make_source(path), len(data) - 10, 20))

    def test_empty_file(self, root: Path) -> None:
        path = root / "empty"
        path.write_bytes(b"")
        assert run(stat_of(self.make_source(path))).size == 0

    def test_missing_path(self, root: Path) -> None:
        with pytest.raises(NotFoundError):
            run(stat_of(self.make_source(root / "does-not-exist")))

    def test_directory_is_refused(self, root: Path) -> None:
        (root / "adir").mkdir()
        with pytest.raises(UsageError):
            run(stat_of(self.make_source(root / "adir")))

"""One conformance suite that every source backend passes against its real server.

A backend joins by subclassing :class:`SourceConformance` in its own test
module (class name starting with ``Test``) and providing ``root`` (a local
folder whose files the backend's server serves) and ``make_source(path)``.
The local and SFTP backends run it in tests/conformance/test_conformance.py.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from s3ferry.core.errors import NotFoundError, SourceChangedError, UsageError
from s3ferry.core.storage import Source


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


async def walk_all(source: Source) -> dict[str, int]:
    try:
        return {entry.path: entry.size async for entry in source.walk()}
    finally:
        await source.close()


async def list_one_folder(source: Source) -> dict[str, int]:
    try:
        return {entry.path: entry.size async for entry in source.list_folder()}
    finally:
        await source.close()


async def read_child(source: Source, path: str, length: int) -> bytes:
    buf = bytearray(length)
    try:
        child = source.child(path)
        assert (await child.stat()).size == length
        async with child.reader() as reader:
            await reader.read_into(0, memoryview(buf))
    finally:
        await source.close()
    return bytes(buf)


class TreeConformance:
    """For sources that list (``features.listing``): ``walk`` and ``child``, used by ``cp -r``, and
    ``list_folder``, used by a glob in ``cp``'s source.

    Subclasses provide the same ``root`` / ``make_source`` as :class:`SourceConformance`.
    """

    FILES: ClassVar[dict[str, int]] = {"a.txt": 10, "sub/b.bin": 1000, "sub/deeper/c": 0, "name with space.txt": 3,
                                       "sub/ünï.csv": 7}

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        raise NotImplementedError

    def make_source(self, path: Path) -> Source:
        raise NotImplementedError

    @pytest.fixture
    def tree(self, root: Path) -> Path:
        top = root / "tree"
        for rel, size in self.FILES.items():
            (top / rel).parent.mkdir(parents=True, exist_ok=True)
            (top / rel).write_bytes(os.urandom(size))
        (top / "empty-dir").mkdir()
        return top

    def test_walk_lists_every_file_recursively(self, tree: Path) -> None:
        assert run(walk_all(self.make_source(tree))) == self.FILES

    def test_walk_with_trailing_slash(self, tree: Path) -> None:
        source = self.make_source(tree)
        slashed = source.location.with_path(source.location.path.rstrip("/") + "/")
        assert run(walk_all(source.child(slashed.path))) == self.FILES

    def test_walk_of_a_subfolder(self, tree: Path) -> None:
        got = run(walk_all(self.make_source(tree / "sub")))
        assert got == {"b.bin": 1000, "deeper/c": 0, "ünï.csv": 7}

    def test_walk_of_missing_folder(self, root: Path) -> None:
        with pytest.raises(NotFoundError):
            run(walk_all(self.make_source(root / "no-such-dir")))

    def test_list_folder_reads_one_level(self, tree: Path) -> None:
        """What a glob in cp's source lists: the folder's own files, nothing below it."""
        assert run(list_one_folder(self.make_source(tree))) == {"a.txt": 10, "name with space.txt": 3}
        assert run(list_one_folder(self.make_source(tree / "sub"))) == {"b.bin": 1000, "ünï.csv": 7}

    def test_list_folder_of_missing_folder(self, root: Path) -> None:
        with pytest.raises(NotFoundError):
            run(list_one_folder(self.make_source(root / "no-such-dir")))

    def test_child_reads_a_file_of_the_tree(self, tree: Path) -> None:
        data = (tree / "sub" / "b.bin").read_bytes()
        source = self.make_source(tree)
        child_path = source.location.path.rstrip("/") + "/sub/b.bin"
        assert run(read_child(source, child_path, len(data))) == data


class SinkConformance:
    """What every destination does with parts: any order in, exact bytes out, nothing left on abort.

    Subclasses provide ``make_sink(name)`` (a sink for a new file ``name`` in a
    fresh folder / prefix), ``read_back(name)`` (its bytes, or None) and
    ``names()`` (everything in that folder, temporary files included).
    """

    PART = 5 * 1024 * 1024

    def make_sink(self, name: str) -> Any:
        raise NotImplementedError

    def read_back(self, name: str) -> bytes | None:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    async def _write(self, name: str, data: bytes, order: list[int] | None = None, abort: bool = False) -> Any:
        from s3ferry.core import checksums
        from s3ferry.engine.transfer import plan_parts

        sink = self.make_sink(name)
        algorithm = checksums.CRC32C
        try:
            await sink.prepare()
            parts = plan_parts(len(data), self.PART)
            writer = await sink.open_writer(len(data), self.PART, algorithm)
            receipts = {}
            for index in order or range(len(parts)):
                part = parts[index]
                view = memoryview(data)[part.offset : part.offset + part.length]
                digest = checksums.PartDigest(algorithm.part(view), part.length)
                receipts[part.number] = await writer.write_part(part, view, digest)
                if abort:
                    await writer.abort()
                    return None
            ordered = [receipts[p.number] for p in parts]
            whole = algorithm.whole([r.digest for r in ordered], single=len(parts) == 1)
            return await writer.complete(ordered, whole)
        finally:
            await sink.close()

    def test_parts_in_any_order(self) -> None:
        data = os.urandom(3 * self.PART + 4321)
        done = run(self._write("out of order.bin", data, order=[3, 0, 2, 1]))
        assert done.size == len(data)
        assert self.read_back("out of order.bin") == data
        assert self.names() == ["out of order.bin"]

    def test_one_part(self) -> None:
        data = os.urandom(1000)
        run(self._write("small.bin", data))
        assert self.read_back("small.bin") == data

    def test_empty_file(self) -> None:
        run(self._write("empty.bin", b""))
        assert self.read_back("empty.bin") == b""

    def test_replaces_an_existing_file(self) -> None:
        run(self._write("again.bin", os.urandom(2000)))
        data = os.urandom(self.PART + 10)
        run(self._write("again.bin", data))
        assert self.read_back("again.bin") == data
        assert self.names() == ["again.bin"]

    def test_abort_leaves_nothing(self) -> None:
        run(self._write("aborted.bin", os.urandom(2 * self.PART), abort=True))
        assert self.read_back("aborted.bin") is None
        assert self.names() == []

    def test_a_new_sink_continues_stored_parts(self) -> None:
        """Resume: parts 1 and 3 written by one process; another finds the upload, checks them, finishes."""
        from s3ferry.core import checksums
        from s3ferry.engine.transfer import plan_parts

        algorithm, data = checksums.CRC32C, os.urandom(3 * self.PART + 99)
        parts = plan_parts(len(data), self.PART)
        view = memoryview(data)

        async def write(writer: Any, index: int) -> Any:
            part = parts[index]
            chunk = view[part.offset : part.offset + part.length]
            return await writer.write_part(part, chunk, checksums.PartDigest(algorithm.part(chunk), part.length))

        async def first() -> dict[int, Any]:
            sink = self.make_sink("resumed.bin")
            try:
                await sink.prepare()
                writer = await sink.open_writer(len(data), self.PART, algorithm)
                return {parts[i].number: await write(writer, i) for i in (0, 2)}
            finally:
                await sink.close()

        async def second(receipts: dict[int, Any]) -> Any:
            sink = self.make_sink("resumed.bin")
            try:
                (found,) = await sink.find_uploads(sink.location.path)
                writer = sink.resume_writer(found.upload_id, algorithm)
                listed = await writer.list_parts([parts[0], parts[2]])
                for number in (1, 3):
                    assert (listed[number].etag, listed[number].size) == (receipts[number].etag,
                                                                          parts[number - 1].length)
                receipts.update({parts[i].number: await write(writer, i) for i in (1, 3)})
                ordered = [receipts[p.number] for p in parts]
                return await writer.complete(ordered, algorithm.whole([r.digest for r in ordered], single=False))
            finally:
                await sink.close()

        done = run(second(run(first())))
        assert done.size == len(data)
        assert self.read_back("resumed.bin") == data
        assert self.names() == ["resumed.bin"]

"""The declared capabilities of each backend (issue 15): the engine finds an optional ability by one
``isinstance`` against a runtime-checkable protocol, which matches by member names alone -- a renamed
method would silently turn the ability off. These pin which backend has which."""

from __future__ import annotations

import pytest

from s3ferry.backends import open_sink, open_source
from s3ferry.cli.progress import LogProgress, RichProgress
from s3ferry.core.options import TransferOptions
from s3ferry.core.storage import ListingSink, MetadataSink, PartialFile, PinnedSource, Sink
from s3ferry.core.urls import parse
from s3ferry.engine.streamed import StreamingWriter
from s3ferry.engine.transfer import Executor
from s3ferry.observe.progress import FileBars
from s3ferry.operations.distributed import DaskExecutor
from s3ferry.operations.single import LocalExecutor

OPTIONS = TransferOptions()


def _sink(url: str) -> Sink:
    return open_sink(parse(url), OPTIONS)


@pytest.mark.parametrize(("url", "lists", "metadata"), [
    ("s3://bucket/prefix/", True, True),
    ("/tmp/s3ferry-seams/", False, False),
    ("sftp://me@127.0.0.1/in/", True, False),  # a tree lists it once: a stat per file costs a round trip
])
def test_sink_abilities(url: str, lists: bool, metadata: bool) -> None:
    sink = _sink(url)
    assert isinstance(sink, ListingSink) is lists
    assert isinstance(sink, MetadataSink) is metadata


@pytest.mark.parametrize(("url", "streams", "partial"), [
    ("s3://bucket/key.bin", True, False),
    ("/tmp/s3ferry-seams/key.bin", False, True),
    ("sftp://me@127.0.0.1/in/key.bin", False, True),
])
def test_writer_abilities(url: str, streams: bool, partial: bool) -> None:
    writer = _sink(url).resume_writer(None, None)  # no upload yet: nothing is opened
    assert isinstance(writer, StreamingWriter) is streams
    assert isinstance(writer, PartialFile) is partial


@pytest.mark.parametrize(("url", "pinned"), [
    ("s3://bucket/key.bin", True),
    ("/tmp/s3ferry-seams/key.bin", False),
    ("sftp://me@127.0.0.1/out/key.bin", False),
    ("https://example.com/key.bin", False),
    ("ftp://me@127.0.0.1/out/key.bin", False),
])
def test_source_pins_a_version(url: str, pinned: bool) -> None:
    assert isinstance(open_source(parse(url), OPTIONS), PinnedSource) is pinned


def test_only_rich_has_a_bar_per_file() -> None:
    from rich.console import Console

    assert isinstance(RichProgress(Console()), FileBars)
    assert not isinstance(LogProgress(30.0), FileBars)


def test_executors() -> None:
    executors: list[Executor] = [LocalExecutor(), DaskExecutor("tcp://127.0.0.1:1")]
    local, dask = executors
    assert (local.remote, dask.remote) == (False, True)

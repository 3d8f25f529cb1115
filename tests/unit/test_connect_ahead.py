"""Which end connects first (backends.open_ends) is decided from the URL before its backend is imported: the
decision must agree with what each backend declares (``features.connects_ahead``)."""

from __future__ import annotations

import pytest

from s3ferry.backends import _connects_ahead, open_sink, open_source
from s3ferry.core.options import TransferOptions
from s3ferry.core.urls import parse

SOURCES = ["sftp://me@host/out/", "s3://bucket/in/", "/tmp/folder/", "ftp://host/out/", "https://host/f.bin"]
SINKS = ["sftp://me@host/in/", "s3://bucket/out/", "/tmp/folder/"]


@pytest.mark.parametrize("url", SOURCES)
def test_the_order_of_connecting_agrees_with_each_source(url: str) -> None:
    location = parse(url)
    assert open_source(location, TransferOptions()).features.connects_ahead == _connects_ahead(location)


@pytest.mark.parametrize("url", SINKS)
def test_the_order_of_connecting_agrees_with_each_sink(url: str) -> None:
    location = parse(url)
    assert open_sink(location, TransferOptions()).features.connects_ahead == _connects_ahead(location)

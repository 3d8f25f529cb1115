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


#: a Features flag -> the methods of the plain protocol a caller casts the end to when the flag is set
CAST_ON_FLAG = {
    "archiving": ("archive", "remove"),
    "connects_ahead": ("warm_up",),
    "reads_small_in_stat": ("read_ahead",),
}


@pytest.mark.parametrize("url,opener", [(u, open_source) for u in SOURCES] + [(u, open_sink) for u in SINKS])
def test_an_end_that_declares_an_ability_has_its_methods(url: str, opener: object) -> None:
    end = opener(parse(url), TransferOptions())  # type: ignore[operator]
    for flag, methods in CAST_ON_FLAG.items():
        if getattr(end.features, flag):
            missing = [m for m in methods if not callable(getattr(end, m, None))]
            assert not missing, f"{url} declares {flag} without {missing}"


def test_some_end_declares_each_ability() -> None:
    """The check above would pass with no backend setting a flag at all."""
    features = [open_source(parse(u), TransferOptions()).features for u in SOURCES]
    features += [open_sink(parse(u), TransferOptions()).features for u in SINKS]
    for flag in CAST_ON_FLAG:
        assert any(getattr(f, flag) for f in features), flag

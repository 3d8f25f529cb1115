"""Which push flows an object event is for, and the dispatcher's bounded queue (no server: nothing runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3ferry.jobs.flowfile import Flow, load
from s3ferry.service.dispatch import EventDispatcher
from s3ferry.service.events import ObjectEvent, QueueFull


def flows(tmp_path: Path) -> list[Flow]:
    path = tmp_path / "flows.toml"
    path.write_text(f"""\
[flows.reports]
kind = "push"
source = "s3://outbox/reports"
destination = "{tmp_path / 'inbox'}"
every = "1h"
include = ["*.csv", "*.pdf"]
exclude = ["draft/*"]

[flows.everything]
kind = "push"
source = "s3://outbox"
destination = "{tmp_path / 'all'}"
every = "1h"

[flows.drop]
kind = "pull"
source = "{tmp_path / 'drop'}"
destination = "s3://outbox/reports/"
every = "1h"
""")
    loaded = load(path)
    assert not loaded.errors, loaded.errors
    return list(loaded.flows.values())


def created(bucket: str, key: str, etag: str | None = "e1") -> ObjectEvent:
    return ObjectEvent(bucket, key, "created", etag)


def test_match_by_bucket_prefix_and_filters(tmp_path: Path) -> None:
    dispatcher = EventDispatcher(flows(tmp_path))
    assert [f.name for f in dispatcher.flows] == ["reports", "everything"]  # push flows only

    def matched(event: ObjectEvent) -> list[tuple[str, str]]:
        return [(flow.name, rel) for flow, rel in dispatcher.match(event)]

    assert matched(created("outbox", "reports/2026/a.csv")) == [("reports", "2026/a.csv"),
                                                                ("everything", "reports/2026/a.csv")]
    assert matched(created("outbox", "reports/a.log")) == [("everything", "reports/a.log")]  # not included
    assert matched(created("outbox", "reports/draft/a.csv")) == [("everything", "reports/draft/a.csv")]
    assert matched(created("outbox", "reportsX/a.csv")) == [("everything", "reportsX/a.csv")]  # prefix is a folder
    assert matched(created("other", "reports/a.csv")) == []
    assert matched(ObjectEvent("outbox", "reports/a.csv", "removed")) == []  # a push never deletes
    assert matched(created("outbox", "reports/")) == [("everything", "reports/")]


def test_only_named_flows(tmp_path: Path) -> None:
    dispatcher = EventDispatcher(flows(tmp_path), names=["reports"])
    assert [f.name for f in dispatcher.flows] == ["reports"]


def test_queue_bounded_all_or_nothing(tmp_path: Path) -> None:
    dispatcher = EventDispatcher(flows(tmp_path), names=["reports"], queue_size=2)
    assert dispatcher.submit([created("outbox", "reports/a.csv")]) == 1
    with pytest.raises(QueueFull):
        dispatcher.submit([created("outbox", "reports/b.csv"), created("outbox", "reports/c.csv")])
    assert dispatcher.submit([created("outbox", "reports/b.csv")]) == 1  # the refused pair left no trace

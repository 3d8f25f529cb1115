"""What a resumed transformed upload may keep (issue 19, item 4): pure rules, no server."""

from __future__ import annotations

import hashlib

from s3ferry.core import checksums
from s3ferry.core.options import MiB, TransferOptions
from s3ferry.core.storage import ListedPart, Part, Stat
from s3ferry.engine.journal import PartRecord, TransferRecord
from s3ferry.engine.stage_resume import Earlier, Shape, label, why_not_continue
from s3ferry.engine.transformed import Budget

DATA = b"re-derived part bytes" * 1000
CRC = checksums.get("crc32c")
assert CRC is not None
DIGEST = checksums.PartDigest(CRC.part(DATA), len(DATA))
MD5 = hashlib.md5(DATA).hexdigest()


def shape(**changes: object) -> Shape:
    base = {"source": "sftp://h/a.csv", "destination": "s3://b/a.csv.zst", "stat": Stat(10, 1.0),
            "part_size": 8 * MiB, "label": label("crc32c", "zstd:3"), "deterministic": True, "mode": "auto"}
    return Shape(**{**base, **changes})  # type: ignore[arg-type]


def record(**changes: object) -> TransferRecord:
    base = {"id": 1, "source": "sftp://h/a.csv", "destination": "s3://b/a.csv.zst", "size": 10, "mtime": 1.0,
            "etag": None, "part_size": 8 * MiB, "checksum": "crc32c+zstd:3", "upload_id": "u1", "created": 0.0}
    return TransferRecord(**{**base, **changes})  # type: ignore[arg-type]


def test_a_stored_part_is_kept_only_when_the_rederived_bytes_prove_it() -> None:
    part = Part(1, 0, len(DATA))
    journaled = Earlier(1, {1: PartRecord(1, len(DATA), '"etag1"', DIGEST.b64)},
                        {1: ListedPart(1, len(DATA), '"etag1"')})
    assert journaled.proven(part, DATA, DIGEST) is not None
    other = checksums.PartDigest(CRC.part(DATA[::-1]), len(DATA))
    assert journaled.proven(part, DATA[::-1], other) is None  # other bytes, same length: sent again
    by_md5 = Earlier(1, {}, {1: ListedPart(1, len(DATA), f'"{MD5}"')})  # not journaled in time: its MD5 ETag
    assert by_md5.proven(part, DATA, DIGEST) is not None
    assert by_md5.proven(part, DATA[::-1], other) is None
    assert Earlier(1, {}, {}).proven(part, DATA, DIGEST) is None


def test_when_an_earlier_attempt_is_not_continued() -> None:
    assert why_not_continue(shape(), record()) is None
    assert "not deterministic" in str(why_not_continue(shape(deterministic=False), record()))
    assert "went through zstd:3" in str(why_not_continue(shape(label=label("crc32c", "zstd:9")), record()))
    assert "no transform" in str(why_not_continue(shape(), record(checksum="crc32c")))  # an untransformed attempt
    assert "source changed" in str(why_not_continue(shape(stat=Stat(11, 1.0)), record()))
    assert "--force" in str(why_not_continue(shape(mode="force"), record()))


def test_the_budget_holds_the_read_ahead_and_the_parts() -> None:
    budget = Budget.of(TransferOptions(), 8 * MiB)
    assert budget.reads * budget.slab + (budget.uploads + 1) * budget.part_size <= TransferOptions().max_memory
    small = Budget.of(TransferOptions(max_memory=16 * MiB), 8 * MiB)
    assert small.uploads == 1 and small.reads >= 1  # at least one of each, whatever the budget

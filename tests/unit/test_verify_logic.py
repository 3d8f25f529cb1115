"""``s3ferry verify``'s pure logic (issue 20): which check compares a pair, the part layouts tried for a
multipart ETag, the values recomputed from part digests, and the exit code a set of results adds up to."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from s3ferry.core.checksums import CRC32, CRC32C, MD5, SHA256
from s3ferry.core.options import MiB, TransferOptions
from s3ferry.core.verification import StoredCheck, multipart_etag
from s3ferry.operations.verify import (
    FileCheck,
    VerifyResult,
    choose,
    layout_of,
    layouts,
    same_form,
    tried_part_sizes,
    value_of,
)

SIZE = 20 * MiB + 5


def etag_of(data: bytes, part: int) -> str:
    return multipart_etag([hashlib.md5(data[o:o + part]).digest() for o in range(0, len(data), part)])


def test_tried_part_sizes_are_s3ferrys_and_the_aws_clis() -> None:
    assert tried_part_sizes(SIZE, TransferOptions()) == [8 * MiB]
    assert tried_part_sizes(SIZE, TransferOptions(part_size=16 * MiB)) == [16 * MiB, 8 * MiB]
    huge = 100_000 * MiB  # 8 MiB parts would be 12,500: s3ferry grows to 10 MiB, the AWS CLI doubles to 16
    assert tried_part_sizes(huge, TransferOptions()) == [10 * MiB, 8 * MiB, 16 * MiB]


def test_a_multipart_etag_with_its_own_part_sizes_is_trusted() -> None:
    check = StoredCheck(MD5, "etag", "0" * 32 + "-3", (8 * MiB, 8 * MiB, 4 * MiB + 5))
    assert layouts(check, SIZE, [16 * MiB]) == ([(8 * MiB, 8 * MiB, 4 * MiB + 5)], True)


def test_without_part_sizes_only_layouts_of_that_many_parts_are_guessed() -> None:
    check = StoredCheck(MD5, "etag", "0" * 32 + "-3")
    found, trusted = layouts(check, SIZE, [8 * MiB, 16 * MiB, 5 * MiB])
    assert (found, trusted) == ([(8 * MiB, 8 * MiB, 4 * MiB + 5)], False)  # 16 MiB: 2 parts; 5 MiB: 5
    wrong = StoredCheck(MD5, "etag", "0" * 32 + "-3", (MiB,) * 3)  # a store ignoring partNumber: sizes that lie
    assert layouts(wrong, SIZE, [8 * MiB]) == ([(8 * MiB, 8 * MiB, 4 * MiB + 5)], False)
    assert layouts(StoredCheck(MD5, "etag", "0" * 32 + "-1"), SIZE, []) == ([(SIZE,)], True)


def test_a_guessed_layout_recomputes_the_etag_of_the_aws_cli() -> None:
    data = os.urandom(SIZE)
    check = StoredCheck(MD5, "etag", etag_of(data, 8 * MiB))
    (layout,), _ = layouts(check, SIZE, tried_part_sizes(SIZE, TransferOptions()))
    digests, offset = [], 0
    for length in layout:
        digests.append(hashlib.md5(data[offset:offset + length]).digest())
        offset += length
    assert check.equals(value_of(check, digests))


def test_values_of_whole_object_checks() -> None:
    data = b"hello verify"
    assert value_of(StoredCheck(MD5, "etag", ""), [hashlib.md5(data).digest()]) == hashlib.md5(data).hexdigest()
    sha = StoredCheck(SHA256, "full", "")
    assert value_of(sha, [hashlib.sha256(data).digest()]) == base64.b64encode(hashlib.sha256(data).digest()).decode()
    composite = StoredCheck(CRC32, "composite", "x-2")
    assert value_of(composite, [CRC32.part(b"a"), CRC32.part(b"b")]) == CRC32.composite([CRC32.part(b"a"),
                                                                                           CRC32.part(b"b")])


def test_two_stored_checks_of_one_form_are_compared_without_reading() -> None:
    a, b = StoredCheck(CRC32C, "full", "AAAA"), StoredCheck(CRC32C, "full", "BBBB")
    assert choose(a, b, SIZE, [8 * MiB]).how == "stored"
    assert not same_form(a, StoredCheck(CRC32, "full", "AAAA"), SIZE)
    # Composite checks of different part layouts cannot be compared as they are: one side is read.
    x = StoredCheck(CRC32, "composite", "x-2", (16 * MiB, 4 * MiB + 5))
    y = StoredCheck(CRC32, "composite", "y-2", (12 * MiB, 8 * MiB + 5))
    method = choose(x, y, SIZE, [8 * MiB])
    assert (method.how, method.read, method.check) == ("stream", "source", y)
    # Multipart ETags whose part sizes are unknown: equal values are the same parts; others are read.
    unknown = StoredCheck(MD5, "etag", "a" * 32 + "-3", (MiB,) * 3)
    assert same_form(unknown, StoredCheck(MD5, "etag", "A" * 32 + "-3"), SIZE)
    assert choose(unknown, StoredCheck(MD5, "etag", "b" * 32 + "-3"), SIZE, [8 * MiB]).how == "stream"


def test_the_side_without_a_check_is_read_and_neither_means_both() -> None:
    stored = StoredCheck(CRC32C, "full", "AAAA")
    assert (choose(None, stored, SIZE, []).how, choose(None, stored, SIZE, []).read) == ("stream", "source")
    assert (choose(stored, None, SIZE, []).how, choose(stored, None, SIZE, []).read) == ("stream", "destination")
    assert choose(None, None, SIZE, []).how == "both"


def test_an_etag_no_layout_fits_is_size_only_and_a_trusted_check_goes_first() -> None:
    etag = StoredCheck(MD5, "etag", "0" * 32 + "-7")
    method = choose(None, etag, SIZE, [8 * MiB])
    assert method.how == "size" and "no part size tried (8 MiB) makes 7 parts" in method.reason
    crc = StoredCheck(CRC32C, "full", "AAAA")
    guessable = StoredCheck(MD5, "etag", "0" * 32 + "-3")
    assert choose(crc, guessable, SIZE, [8 * MiB]).check == crc  # the trusted check, though DST's is a guess


def result(*statuses: str, require: bool = False, code: int = 2) -> VerifyResult:
    files = [FileCheck(f"f{i}", s, exit_code=code if s == "failed" else 0)  # type: ignore[arg-type]
             for i, s in enumerate(statuses)]
    return VerifyResult("a", "b", require, files)


@pytest.mark.parametrize(("statuses", "require", "code"), [
    (("identical", "identical"), False, 0),
    (("identical", "size_only"), False, 0),
    (("identical", "size_only"), True, 3),
    (("size_only", "differs"), True, 1),
    (("identical", "missing"), False, 1),
    (("extra",), False, 1),
    (("failed", "differs"), False, 2),
    ((), True, 0),
])
def test_exit_codes(statuses: tuple[str, ...], require: bool, code: int) -> None:
    assert result(*statuses, require=require).exit_code == code


def test_a_failed_read_is_exit_1_and_lines_say_what_was_compared() -> None:
    assert result("failed", code=1).exit_code == 1
    line = FileCheck("a/b.bin", "size_only", "size only", "--size-only").line()
    assert line == "size only  a/b.bin  [size only: --size-only]"
    assert layout_of(0, 8 * MiB) == (0,)

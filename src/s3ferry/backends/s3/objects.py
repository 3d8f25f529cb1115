"""What S3's answers say about an object, and the arguments that reach an encrypted one; shared by the
sink and the source (and by the server-side copy). Plain dicts in, plain values out: no client, no botocore.

A HeadObject answer becomes a :class:`~s3ferry.core.storage.Stat` (:func:`head_stat`), with the source's
mtime s3ferry records in the object's metadata under :data:`MTIME_KEY`; :func:`full_object_checksum` picks
the checksum that does not depend on part boundaries; :func:`is_md5` tells an ETag that is an MD5;
:func:`sse_c_args` are the SSE-C request arguments.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from s3ferry.core.storage import Stat
from s3ferry.core.verification import checksum_of

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
MTIME_KEY = "s3ferry-mtime"  # x-amz-meta-s3ferry-mtime: the source file's mtime (epoch seconds)


def is_md5(etag: str) -> bool:
    """Whether ``etag`` (unquoted, lower case) is a plain MD5 in hex: 32 hex digits, no ``-N`` part count."""
    return _MD5_HEX.match(etag) is not None


def epoch(when: object) -> float | None:
    """A listing's or HeadObject's ``LastModified`` (a datetime) as seconds since the epoch."""
    return when.timestamp() if isinstance(when, datetime) else None


def head_stat(head: dict[str, Any]) -> Stat:
    """A HeadObject answer as a :class:`Stat`: the mtime recorded from the source where there is one."""
    recorded = (head.get("Metadata") or {}).get(MTIME_KEY)
    try:
        mtime = float(recorded) if recorded else None
    except ValueError:
        mtime = None
    if mtime is None:
        mtime = epoch(head.get("LastModified"))
    return Stat(size=int(head["ContentLength"]), mtime=mtime, etag=head.get("ETag"),
                checksum=full_object_checksum(head))


def full_object_checksum(head: dict[str, Any]) -> tuple[str, str] | None:
    """``(algorithm, base64)`` of a full-object checksum in a HEAD answer (a single-part object's, or a
    FULL_OBJECT multipart one's); a COMPOSITE one (``-N``) depends on the part boundaries: None."""
    check = checksum_of(head)
    return (check.algorithm.s3_name, check.value) if check is not None and check.kind == "full" else None


def sse_c_args(key: bytes | None, prefix: str = "") -> dict[str, Any]:
    """SSE-C request arguments (botocore adds the base64 and the key's MD5)."""
    if key is None:
        return {}
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}

"""The S3 fault proxy (tests/servers/s3proxy.py) names each request's S3 operation (no server runs)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from servers.s3proxy import operation_name


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {"X-Amz-Copy-Source": "/b/o"}, "UploadPartCopy"),
        ("PUT", "/b/dir/k%20x", {}, "PutObject"),
        ("PUT", "/b", {}, "CreateBucket"),
        ("POST", "/b/k?uploads", {}, "CreateMultipartUpload"),
        ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload"),
        ("GET", "/b/k?uploadId=u", {}, "ListParts"),
        ("GET", "/b?uploads", {}, "ListMultipartUploads"),
        ("HEAD", "/b/k", {}, "HeadObject"),
        ("HEAD", "/b", {}, "HeadBucket"),
        ("GET", "/b/k", {}, "GetObject"),
        ("GET", "/b?list-type=2&prefix=x", {}, "ListObjects"),
        ("GET", "/b/", {}, "ListObjects"),
        ("DELETE", "/b/k", {}, "DeleteObject"),
        ("DELETE", "/b", {}, "Other"),
        ("POST", "/b?delete", {}, "Other"),
        ("GET", "/", {}, "Other"),
    ],
)
def test_operation_names(method: str, target: str, headers: dict[str, str], expected: str) -> None:
    assert operation_name(method, target, CIMultiDict(headers)) == expected

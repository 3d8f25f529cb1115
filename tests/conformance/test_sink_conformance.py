"""Every destination (local files, SFTP, S3) and the S3 source run the shared suites."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from s3ferry.backends.local import LocalSink
from s3ferry.backends.s3.sink import S3Sink
from s3ferry.backends.s3.source import S3Source
from s3ferry.backends.sftp import SftpSink
from s3ferry.core.options import S3Options, SftpOptions
from s3ferry.core.storage import Source
from s3ferry.core.urls import parse
from s3ferry.demo import servers as testbed
from support.conformance import SinkConformance, SourceConformance, TreeConformance
from support.helpers import empty_and_delete


class TestLocalSink(SinkConformance):
    @pytest.fixture(autouse=True)
    def folder(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "dest"

    def make_sink(self, name: str) -> Any:
        return LocalSink(parse(str(self.dir / name)))

    def read_back(self, name: str) -> bytes | None:
        path = self.dir / name
        return path.read_bytes() if path.exists() else None

    def names(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir()) if self.dir.exists() else []


class TestSftpSink(TestLocalSink):
    @pytest.fixture(autouse=True)
    def folder(self, ssh: testbed.SshServer) -> None:  # type: ignore[override]
        self.ssh = ssh
        self.dir = ssh.root / f"sink-{uuid.uuid4().hex[:8]}"

    def make_sink(self, name: str) -> Any:
        options = SftpOptions(identity=(self.ssh.user_key,), known_hosts=self.ssh.known_hosts)
        return SftpSink(parse(self.ssh.url(self.dir / name)), options, block=64 * 1024, window=4)


@pytest.fixture
def s3_bucket(s3: testbed.SeaweedServer, s3_env: dict[str, str]) -> Any:
    name = f"c-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    yield name, client
    empty_and_delete(client, name)


class TestS3Sink(SinkConformance):
    @pytest.fixture(autouse=True)
    def bucket(self, s3_bucket: Any) -> None:
        self.bucket_name, self.client = s3_bucket

    def make_sink(self, name: str) -> Any:
        return S3Sink(parse(f"s3://{self.bucket_name}/{name}"), S3Options())

    def read_back(self, name: str) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket_name, Key=name)["Body"].read())
        except self.client.exceptions.NoSuchKey:
            return None

    def names(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket_name).get("Contents", [])
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket_name).get("Uploads", [])
        return sorted(o["Key"] for o in listing) + [f"(upload) {u['Key']}" for u in uploads]


class TestS3Source(SourceConformance, TreeConformance):
    """The local ``root`` is mirrored into a bucket: a file becomes an object, a folder a prefix."""

    @pytest.fixture
    def root(self, tmp_path: Path, s3_bucket: Any) -> Path:
        self.bucket_name, self.client = s3_bucket
        self.top = tmp_path
        return tmp_path

    def make_source(self, path: Path) -> Source:
        self._mirror(path)
        key = str(path.relative_to(self.top))
        return S3Source(parse(f"s3://{self.bucket_name}/{key}"), S3Options())

    def _mirror(self, path: Path) -> None:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
        if path.is_dir() and not files:
            files_dir_marker = f"{path.relative_to(self.top)}/marker"
            self.client.put_object(Bucket=self.bucket_name, Key=files_dir_marker, Body=b"")
        for file in files:
            self.client.put_object(Bucket=self.bucket_name, Key=str(file.relative_to(self.top)),
                                   Body=file.read_bytes(), ChecksumAlgorithm="CRC32C")

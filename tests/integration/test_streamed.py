"""Parts larger than the byte budget are streamed: sent while read, checksum as a trailer.

Memory is a benchmark matter (docs/benchmarks.md); these tests check that the
streamed path is taken and that it is as safe as the buffered one: exact
bytes, S3 verifying each part, retries re-reading the part from the source.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from s3ferry.core.errors import SourceChangedError
from s3ferry.demo import servers as testbed
from servers.proxy import CuttingProxy
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_exists, object_sha256, run_cli, uploads_for, write_random

# 16 MiB parts and a 16 MiB budget: two whole parts do not fit, so parts stream.
STREAM = ("--part-size", "16MiB", "--max-memory", "16MiB", "--no-progress")


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("size", [40 * MiB + 7, 9 * MiB])  # multipart, and one streamed PutObject
def test_streamed_parts_arrive_intact(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer, size: int) -> None:
    src = tmp_path / "s.bin"
    digest = write_random(src, size)
    with S3FaultProxy(s3.s3_port) as proxy:
        result = run_cli("cp", str(src), f"s3://{bucket}/s.bin", *STREAM, "--json",
                         env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert result.code == 0, result.stderr
    assert proxy.trailers == -(-size // (16 * MiB))
    assert object_sha256(s3, bucket, "s.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_buffered_parts_when_the_budget_holds_them(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    src = tmp_path / "b.bin"
    write_random(src, 20 * MiB)
    with S3FaultProxy(s3.s3_port) as proxy:
        assert run_cli("cp", str(src), f"s3://{bucket}/b.bin", "--no-progress",
                       env={"AWS_ENDPOINT_URL_S3": proxy.url}).code == 0
    assert proxy.trailers == 0


@pytest.mark.usefixtures("s3_env")
def test_streamed_part_refused_by_s3_is_read_again(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    src = tmp_path / "r.bin"
    digest = write_random(src, 40 * MiB)
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.fail_next += [("UploadPart", 503, "SlowDown"), ("UploadPart", 500, "InternalError")]
        result = run_cli("cp", str(src), f"s3://{bucket}/r.bin", *STREAM, env={"AWS_ENDPOINT_URL_S3": proxy.url})
        failed = proxy.count("UploadPart", 503) + proxy.count("UploadPart", 500)
    assert result.code == 0, result.stderr
    assert failed == 2
    assert object_sha256(s3, bucket, "r.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_sftp_cut_while_streaming(bucket: str, s3: testbed.SeaweedServer, ssh: testbed.SshServer) -> None:
    src = ssh.root / "cut-stream.bin"
    digest = write_random(src, 64 * MiB)
    # A cut costs every part in flight its progress (they are re-read whole):
    # two 16 MiB parts at a time fit between cuts every 40 MiB.
    with CuttingProxy(ssh.port, cut_every=40 * MiB) as proxy:
        url = f"sftp://{ssh.user}@127.0.0.1:{proxy.port}{src}"
        result = run_cli("cp", url, f"s3://{bucket}/cut.bin", *STREAM, "--upload-streams", "2", "-i",
                         str(ssh.user_key), "--host-key", ssh.host_fingerprint)
        assert proxy.cuts >= 1
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "cut.bin") == digest
    assert uploads_for(s3, bucket) == []


@pytest.mark.usefixtures("s3_env")
def test_source_rewritten_while_streaming(tmp_path: Path, bucket: str, s3: testbed.SeaweedServer) -> None:
    import s3ferry

    src = tmp_path / "moving.bin"
    write_random(src, 48 * MiB)

    class ShrinkAfterFirstPart:
        done = False

        def started(self, name: str, total: int) -> None: ...

        def advanced(self, nbytes: int) -> None:
            if not self.done:
                self.done = True
                os.truncate(src, 20 * MiB)

        def finished(self) -> None: ...

    with pytest.raises(SourceChangedError):
        asyncio.run(s3ferry.acopy(str(src), f"s3://{bucket}/m.bin", progress=ShrinkAfterFirstPart(),
                                  part_size=16 * MiB, max_memory=16 * MiB, upload_streams=1))
    assert not object_exists(s3, bucket, "m.bin")
    assert uploads_for(s3, bucket) == []

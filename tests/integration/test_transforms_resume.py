"""Resume of a transformed upload (issue 19, item 4): SIGKILL mid-upload, then the same command sends only
the parts S3 does not hold (each stored part proven by re-deriving its bytes); another chain starts over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import MiB, sftp_flags, uploads_for
from support.resume import kill_at, rerun, stored_bytes

SIZE = 48 * MiB


@pytest.fixture
def source(ssh: testbed.SshServer, tmp_path: Path) -> tuple[Path, bytes]:
    """Mostly incompressible (the output spans many 5 MiB parts), with compressible stretches."""
    path = ssh.root / f"resume-{tmp_path.name}.bin"
    blocks = [os.urandom(MiB) if i % 4 else b"%d,row,text\n" % i * 80_000 for i in range(SIZE // MiB)]
    data = b"".join(blocks)[:SIZE]
    path.write_bytes(data)
    return path, data


def args(ssh: testbed.SshServer, src: Path, bucket: str, key: str, spec: str) -> list[str]:
    return ["cp", ssh.url(src), f"s3://{bucket}/{key}", "--compress", spec, "--part-size", "5MiB",
            "--upload-streams", "2", *sftp_flags(ssh), "--json", "--no-progress"]


def zstd_d(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@pytest.mark.usefixtures("s3_env", "state")
def test_sigkill_then_rerun_sends_only_the_missing_parts(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                         bucket: str, source: tuple[Path, bytes]) -> None:
    src, data = source
    run = args(ssh, src, bucket, "z.bin.zst", "zstd:1")
    kill_at(s3, run, lambda p: p.count("UploadPart", 200) >= 4)
    already = stored_bytes(s3, bucket, "z.bin.zst")
    assert already >= 4 * 5 * MiB
    report, sent, stderr = rerun(s3, run)
    body = s3.client().get_object(Bucket=bucket, Key="z.bin.zst")["Body"].read()
    assert zstd_d(body) == data
    assert "resuming upload" in stderr
    assert sent == len(body) - already, f"re-sent {sent} bytes, {len(body) - already} were missing"
    assert report["uploaded_bytes"] == sent and int(str(report["resumed_parts"])) >= 4
    assert uploads_for(s3, bucket) == []


@pytest.mark.usefixtures("s3_env", "state")
def test_another_chain_starts_over(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                   source: tuple[Path, bytes]) -> None:
    src, data = source
    kill_at(s3, args(ssh, src, bucket, "c.bin", "zstd:1"), lambda p: p.count("UploadPart", 200) >= 3)
    report, sent, stderr = rerun(s3, args(ssh, src, bucket, "c.bin", "zstd:2"))
    assert "starting over" in stderr and "zstd:1" in stderr
    body = s3.client().get_object(Bucket=bucket, Key="c.bin")["Body"].read()
    assert zstd_d(body) == data and sent == len(body) and report["resumed_parts"] == 0
    assert uploads_for(s3, bucket) == []  # the earlier upload was aborted

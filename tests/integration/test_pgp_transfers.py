"""OpenPGP in flight through ``s3ferry cp`` (issue 19): the stages in the engine's transformed path, on real
sshd and SeaweedFS, with the real ``gpg`` as the partner. Decrypted sftp -> s3, encrypted s3 -> sftp, chained
with compression, and tampered or wrongly signed input: exit 3, nothing published, no upload left behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from support.helpers import MiB, object_exists, run_cli, sftp_flags, uploads_for
from support.pgp import ALICE_PASSPHRASE, Keys, made_keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    with made_keys(tmp_path_factory.mktemp("pgp-keys")) as made:
        yield made


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "alice.pass"
    path.write_text(ALICE_PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def csv_rows(size: int, seed: int = 1) -> bytes:
    rows, n, h = bytearray(), 0, hashlib.sha256(str(seed).encode())
    while len(rows) < size:
        h.update(b"x")
        rows += b"%d,%s\n" % (n, h.hexdigest().encode())
        n += 1
    return bytes(rows[:size])


def on_sftp(ssh: testbed.SshServer, tmp_path: Path, name: str, data: bytes) -> Path:
    path = ssh.root / f"pgp-{tmp_path.name}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def encrypted_to_alice(keys: Keys, data: bytes, *extra: str) -> bytes:
    made = keys.gpg("--encrypt", "--recipient", "alice@example.com", *extra, data=data)
    assert made.returncode == 0, made.stderr
    return made.stdout


@pytest.mark.usefixtures("s3_env")
def test_gpg_encrypted_on_sftp_lands_decrypted_in_s3(tmp_path: Path, keys: Keys, passphrase_file: Path,
                                                     ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                     bucket: str) -> None:
    data = csv_rows(13 * MiB)
    src = on_sftp(ssh, tmp_path, "orders.csv.gpg", encrypted_to_alice(keys, data))
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/in/", "--decrypt", "--pgp-key", str(keys.file("alice.sec")),
                     "--pgp-passphrase-file", str(passphrase_file), "--part-size", "5MiB", "--no-progress",
                     *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    body = s3.client().get_object(Bucket=bucket, Key="in/orders.csv")["Body"].read()  # .gpg dropped
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert ALICE_PASSPHRASE not in result.stderr + result.stdout


@pytest.mark.usefixtures("s3_env")
def test_s3_to_sftp_encrypted_and_compressed_reads_back_with_gpg_and_zstd(tmp_path: Path, keys: Keys,
                                                                           ssh: testbed.SshServer,
                                                                           s3: testbed.SeaweedServer,
                                                                           bucket: str) -> None:
    data = csv_rows(9 * MiB, seed=2)
    s3.client().put_object(Bucket=bucket, Key="out/daily.csv", Body=data)
    dest = ssh.root / f"pgp-out-{tmp_path.name}"
    dest.mkdir()
    result = run_cli("cp", f"s3://{bucket}/out/daily.csv", ssh.url(dest) + "/", "--compress", "zstd",
                     "--encrypt-to", str(keys.file("bob.pub")), "--no-progress", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["daily.csv.zst.gpg"]  # compressed, then encrypted
    clear = keys.gpg("--decrypt", data=(dest / "daily.csv.zst.gpg").read_bytes())
    assert clear.returncode == 0 and b"DECRYPTION_OKAY" in clear.stderr, clear.stderr
    zstd = shutil.which("zstd")
    assert zstd is not None
    assert subprocess.run([zstd, "-dc"], input=clear.stdout, capture_output=True, check=True).stdout == data


@pytest.mark.usefixtures("s3_env")
def test_decrypt_then_decompress_a_partners_gpg_gzip_file(tmp_path: Path, keys: Keys, passphrase_file: Path,
                                                          ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                          bucket: str) -> None:
    import gzip

    data = csv_rows(6 * MiB, seed=3)
    src = on_sftp(ssh, tmp_path, "feed.csv.gz.gpg", encrypted_to_alice(keys, gzip.compress(data)))
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/feed/", "--decrypt", "--pgp-key",
                     str(keys.file("alice.sec")), "--pgp-passphrase-file", str(passphrase_file),
                     "--decompress", "auto", "--no-progress", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert s3.client().get_object(Bucket=bucket, Key="feed/feed.csv")["Body"].read() == data


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize("case", ["tampered", "truncated", "signed-by-mallory", "unsigned"])
def test_bad_input_exits_3_and_publishes_nothing(tmp_path: Path, keys: Keys, passphrase_file: Path,
                                                 ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                                 case: str) -> None:
    data = os.urandom(12 * MiB)
    if case == "signed-by-mallory":
        message = bytearray(encrypted_to_alice(keys, data, "--sign", "--local-user", "mallory@example.com"))
    else:
        message = bytearray(encrypted_to_alice(keys, data))
    if case == "tampered":
        message[len(message) // 2] ^= 0x01
    elif case == "truncated":
        del message[-4096:]
    src = on_sftp(ssh, tmp_path, "x.bin.gpg", bytes(message))
    verify = ["--verify-signature", str(keys.file("bob.pub"))] if case in ("signed-by-mallory", "unsigned") else []
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/bad/", "--decrypt", "--pgp-key",
                     str(keys.file("alice.sec")), "--pgp-passphrase-file", str(passphrase_file), *verify,
                     "--part-size", "5MiB", "--no-progress", *sftp_flags(ssh))
    assert result.code == 3, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not object_exists(s3, bucket, "bad/x.bin")
    assert uploads_for(s3, bucket) == []

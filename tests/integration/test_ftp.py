"""The FTP / FTPS source against a real pyftpdlib server (child process on loopback).

The shared conformance suites run over plain FTP and explicit FTPS; the rest
checks what is FTP's own: early-stopped RETRs leaving the control connection
usable, the SIZE/MDTM and LIST fallbacks of servers without MLST/MLSD, TLS
trust, and copies through the CLI that survive cut connections.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from s3ferry.backends import ftp
from s3ferry.backends.ftp import FtpSource
from s3ferry.core.errors import AuthError, NotFoundError, TransferError, UsageError, UserError
from s3ferry.core.options import FtpOptions
from s3ferry.core.storage import Entry, Stat
from s3ferry.core.urls import parse
from servers.ftp_server import FtpServer
from servers.proxy import CuttingProxy
from support.conformance import SourceConformance, TreeConformance
from support.helpers import MiB, object_sha256, run_cli, write_random


def _serve(factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Iterator[FtpServer]:
    base = factory.mktemp(name)
    server = FtpServer(base / "root", base / "work", **kwargs).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _serve(tmp_path_factory, "ftp")


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _serve(tmp_path_factory, "ftps", tls=True)


@pytest.fixture(scope="session")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """A server without MLST/MLSD, as vsftpd is."""
    yield from _serve(tmp_path_factory, "ftp-legacy", mlsx=False)


@pytest.fixture(scope="session")
def flaky_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """Every third RETR breaks off after 1 MiB with 426."""
    yield from _serve(tmp_path_factory, "ftp-flaky", fail_every=3)


def folder_in(server: FtpServer, request: pytest.FixtureRequest) -> Path:
    """A fresh folder inside the server's root for one test (servers live for the session)."""
    folder = server.root_dir / re.sub(r"[^\w.-]", "_", f"{request.cls.__name__ if request.cls else ''}-"
                                                      f"{request.node.name}")
    folder.mkdir()
    return folder


def options_for(server: FtpServer, tmp_path: Path, password: str | None = None) -> FtpOptions:
    pwfile = tmp_path / "ftp-password"
    pwfile.write_text((password if password is not None else server.password) + "\n")
    return FtpOptions(password_file=pwfile, ca_file=server.ca_file if server.tls else None)


def source_for(server: FtpServer, path: Path | str, tmp_path: Path, password: str | None = None) -> FtpSource:
    return FtpSource(parse(server.url(path)), options_for(server, tmp_path, password))


class _OnFtpServer:
    """``root`` / ``make_source`` for the conformance suites; SERVER names the session fixture."""

    SERVER = "ftp_server"

    @pytest.fixture
    def root(self, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
        self.server: FtpServer = request.getfixturevalue(self.SERVER)
        self.options = options_for(self.server, tmp_path)
        return folder_in(self.server, request)

    def make_source(self, path: Path) -> FtpSource:
        return FtpSource(parse(self.server.url(path)), self.options)


class TestFtpSource(_OnFtpServer, SourceConformance):
    pass


class TestFtpTree(_OnFtpServer, TreeConformance):
    pass


class TestFtpsSource(_OnFtpServer, SourceConformance):
    SERVER = "ftps_server"


class TestFtpsTree(_OnFtpServer, TreeConformance):
    SERVER = "ftps_server"


class TestFtpTreeWithoutMlsd(_OnFtpServer, TreeConformance):
    """Listed with LIST (Unix ``ls -l`` lines), as vsftpd must be."""

    SERVER = "legacy_server"


# --- FTP's own behaviour, through the Python API ----------------------------------------------


@pytest.fixture(params=["ftp_server", "ftps_server"])
def server(request: pytest.FixtureRequest) -> FtpServer:
    return request.getfixturevalue(request.param)


async def _many_reads(source: FtpSource, data: bytes, rng: random.Random) -> int:
    try:
        async with source.reader() as reader:
            for _ in range(25):
                offset = rng.randrange(len(data))
                length = rng.randint(1, min(len(data) - offset, 700_000))
                buf = bytearray(length)
                await reader.read_into(offset, memoryview(buf))
                assert buf == data[offset : offset + length], (offset, length)
        assert (await source.stat()).size == len(data)
        async with source.reader() as reader:
            buf = bytearray(len(data))
            await reader.read_into(0, memoryview(buf))
            assert buf == data
        return len(source._pool.all)
    finally:
        await source.close()


def test_early_stopped_reads_keep_one_connection_in_step(
    server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Every read but the last hangs up mid-file; the same control connection serves them all."""
    data = os.urandom(3 * MiB + 17)
    path = folder_in(server, request) / "data.bin"
    path.write_bytes(data)
    connections = asyncio.run(_many_reads(source_for(server, path, tmp_path), data, random.Random(7)))
    assert connections == 1


async def _fail_inside_reader(source: FtpSource) -> tuple[int, int]:
    try:
        with pytest.raises(RuntimeError):
            async with source.reader() as reader:
                await reader.read_into(0, memoryview(bytearray(10)))
                raise RuntimeError("the caller failed")
        dropped = len(source._pool.all)
        await source.stat()  # needs a new connection
        return dropped, len(source._pool.all)
    finally:
        await source.close()


def test_reader_that_failed_drops_its_connection(
    ftp_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = folder_in(ftp_server, request) / "f"
    path.write_bytes(b"0123456789" * 10)
    assert asyncio.run(_fail_inside_reader(source_for(ftp_server, path, tmp_path))) == (0, 1)


async def _children(parent: FtpSource, names: list[str]) -> tuple[list[int], int, int]:
    sizes = []
    for name in names:
        child = parent.child(parent.location.path.rstrip("/") + "/" + name)
        sizes.append((await child.stat()).size)
        await child.close()  # a child does not own the connections
    shared = len(parent._pool.all)
    await parent.close()
    return sizes, shared, len(parent._pool.all)


def test_children_share_the_parents_connections(
    ftp_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = folder_in(ftp_server, request)
    for i in range(3):
        (folder / f"f{i}").write_bytes(b"x" * i)
    got = asyncio.run(_children(source_for(ftp_server, folder, tmp_path), ["f0", "f1", "f2"]))
    assert got == ([0, 1, 2], 1, 0)


async def _read_while_cut(source: FtpSource, proxy: CuttingProxy, size: int) -> BaseException | None:
    buf = bytearray(size)
    try:
        async with source.reader() as reader:
            task = asyncio.ensure_future(reader.read_into(0, memoryview(buf)))
            while not task.done() and not any(buf[:64]):
                await asyncio.sleep(0)  # until the first bytes of the data connection arrive
            proxy.close()  # cut the control connection; the server drops the data connection
            await task
    except TransferError as exc:
        return exc
    finally:
        await source.close()
    return None


def test_control_connection_cut_mid_transfer_is_retryable_not_a_short_file(
    ftp_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = folder_in(ftp_server, request) / "big.bin"
    size = 32 * MiB
    write_random(path, size)
    with CuttingProxy(ftp_server.port) as proxy:
        url = ftp_server.url(path).replace(f":{ftp_server.port}/", f":{proxy.port}/")
        source = FtpSource(parse(url), options_for(ftp_server, tmp_path))
        exc = asyncio.run(_read_while_cut(source, proxy, size))
    assert isinstance(exc, TransferError) and exc.retryable, exc
    assert "connection" in str(exc)


async def _use_after_idle_cuts(source: FtpSource, proxy: CuttingProxy, data: bytes) -> None:
    try:
        for settle in (0.1, 0.0):  # the FIN seen before reuse, or only by the first command
            await source.stat()  # leaves an idle connection in the pool
            proxy._close_all()  # as a server's idle timeout would
            await asyncio.sleep(settle)
            assert (await source.stat()).size == len(data)
            proxy._close_all()
            await asyncio.sleep(settle)
            buf = bytearray(len(data))
            async with source.reader() as reader:
                await reader.read_into(0, memoryview(buf))
            assert buf == data
    finally:
        await source.close()


def test_pooled_connections_closed_by_the_server_are_replaced(
    ftp_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = folder_in(ftp_server, request) / "f"
    data = os.urandom(100_000)
    path.write_bytes(data)
    with CuttingProxy(ftp_server.port) as proxy:
        url = ftp_server.url(path).replace(f":{ftp_server.port}/", f":{proxy.port}/")
        asyncio.run(_use_after_idle_cuts(FtpSource(parse(url), options_for(ftp_server, tmp_path)), proxy, data))


async def _stat_or_error(source: FtpSource) -> Stat | UserError:
    try:
        return await source.stat()
    except UserError as exc:
        return exc
    finally:
        await source.close()


async def _walk(source: FtpSource) -> list[Entry]:
    try:
        return [entry async for entry in source.walk()]
    finally:
        await source.close()


def test_stat_without_mlst_uses_size_and_mdtm(
    legacy_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = folder_in(legacy_server, request)
    (folder / "f.bin").write_bytes(b"z" * 1234)
    st = asyncio.run(_stat_or_error(source_for(legacy_server, folder / "f.bin", tmp_path)))
    assert isinstance(st, Stat), st
    assert (st.size, st.mtime) == (1234, pytest.approx((folder / "f.bin").stat().st_mtime, abs=1))
    assert isinstance(asyncio.run(_stat_or_error(source_for(legacy_server, folder, tmp_path))), UsageError)
    assert isinstance(asyncio.run(_stat_or_error(source_for(legacy_server, folder / "nope", tmp_path))),
                      NotFoundError)


def test_walk_without_mlsd_lists_with_list(
    legacy_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLSD is refused once per server, then every folder is read with LIST; sizes are exact, times UTC
    to the minute (to the day for files older than six months, which ``ls`` shows with a year)."""
    top = folder_in(legacy_server, request)
    files = {"old.bin": 5, "sub/b c.txt": 17, "sub/deeper/d": 0}
    for rel, size in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(b"x" * size)
    old = datetime(2020, 2, 29, 15, 30, tzinfo=UTC)
    os.utime(top / "old.bin", (old.timestamp(), old.timestamp()))
    (top / "sub" / "link").symlink_to(top / "old.bin")  # LIST cannot say what it points to: skipped
    commands: list[str] = []
    real_lines = ftp._lines

    async def recording(client: Any, command: str, path: str) -> list[str]:
        commands.append(command.split(" ", 1)[0])
        return await real_lines(client, command, path)

    monkeypatch.setattr(ftp, "_lines", recording)
    entries = {e.path: e for e in asyncio.run(_walk(source_for(legacy_server, top, tmp_path)))}
    assert {path: e.size for path, e in entries.items()} == files
    assert commands == ["MLSD", "LIST", "LIST", "LIST"]
    assert entries["old.bin"].mtime == datetime(2020, 2, 29, tzinfo=UTC).timestamp()
    for rel in ("sub/b c.txt", "sub/deeper/d"):
        mtime = entries[rel].mtime
        assert mtime is not None and 0 <= (top / rel).stat().st_mtime - mtime < 60, rel


def test_wrong_password_is_an_auth_error_without_the_password(
    ftp_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = folder_in(ftp_server, request) / "f"
    path.write_bytes(b"x")
    exc = asyncio.run(_stat_or_error(source_for(ftp_server, path, tmp_path, password="Wr0ng-Secret")))
    assert isinstance(exc, AuthError)
    assert "authentication failed for ferry@127.0.0.1" in str(exc) and "Wr0ng" not in str(exc)


def test_certificate_must_name_the_host(
    ftps_server: FtpServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """127.1 reaches the same server, but the certificate names 127.0.0.1 and localhost only."""
    path = folder_in(ftps_server, request) / "f"
    path.write_bytes(b"x")
    options = options_for(ftps_server, tmp_path)
    exc = asyncio.run(_stat_or_error(FtpSource(parse(ftps_server.url(path).replace("127.0.0.1", "127.1")), options)))
    assert isinstance(exc, UserError) and "mismatch" in str(exc), exc
    ok = asyncio.run(_stat_or_error(FtpSource(parse(ftps_server.url(path).replace("127.0.0.1", "localhost")),
                                              options)))
    assert isinstance(ok, Stat) and ok.size == 1, ok


# --- Through the CLI, into S3 ----------------------------------------------------------------


def _pwfile(server: FtpServer, tmp_path: Path) -> str:
    path = tmp_path / "pw"
    path.write_text(server.password + "\n")
    return str(path)


def test_cli_ftp_to_s3_in_parallel_parts(
    ftp_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    src = folder_in(ftp_server, request) / "forty.bin"
    digest = write_random(src, 40 * MiB + 333)
    result = run_cli("cp", ftp_server.url(src), f"s3://{bucket}/forty.bin", "--password-file",
                     _pwfile(ftp_server, tmp_path), "--part-size", "8MiB", "--read-streams", "2", "--no-progress")
    assert result.code == 0, result.stderr
    assert object_sha256(request.getfixturevalue("s3"), bucket, "forty.bin") == digest


def test_cli_ftps_to_s3_with_password_from_env(
    ftps_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest
) -> None:
    src = folder_in(ftps_server, request) / "twenty.bin"
    digest = write_random(src, 20 * MiB + 1)
    result = run_cli("cp", ftps_server.url(src), f"s3://{bucket}/twenty.bin", "--ca-bundle",
                     str(ftps_server.ca_file), "--no-progress", env={"S3FERRY_FTP_PASSWORD": ftps_server.password})
    assert result.code == 0, result.stderr
    assert object_sha256(request.getfixturevalue("s3"), bucket, "twenty.bin") == digest


def test_cli_wrong_password(
    ftp_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest
) -> None:
    src = folder_in(ftp_server, request) / "f"
    src.write_bytes(b"x")
    wrong = "Not-The-Secret-42"
    result = run_cli("cp", ftp_server.url(src), f"s3://{bucket}/f", "--no-progress",
                     env={"S3FERRY_FTP_PASSWORD": wrong})
    assert result.code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "authentication failed" in result.stderr
    for secret in (wrong, ftp_server.password):
        assert secret not in result.stderr + result.stdout


def test_cli_missing_file(
    ftp_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest
) -> None:
    missing = folder_in(ftp_server, request) / "no such file"
    result = run_cli("cp", ftp_server.url(missing), f"s3://{bucket}/f", "--no-progress",
                     env={"S3FERRY_FTP_PASSWORD": ftp_server.password})
    assert result.code == 2
    assert "not found" in result.stderr and "no such file" in result.stderr


def test_cli_ftps_without_ca_bundle_is_refused(
    ftps_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest
) -> None:
    src = folder_in(ftps_server, request) / "f"
    src.write_bytes(b"x")
    result = run_cli("cp", ftps_server.url(src), f"s3://{bucket}/f", "--no-progress",
                     env={"S3FERRY_FTP_PASSWORD": ftps_server.password})
    assert result.code == 2
    assert "certificate" in result.stderr and "--ca-bundle" in result.stderr


def test_cli_tree_from_a_server_without_mlsd(
    legacy_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    top = folder_in(legacy_server, request) / "tree"
    sizes = {"a.bin": 3 * MiB + 5, "sub/b c.txt": 1000, "sub/deeper/ünï": 0}
    digests = {}
    for rel, size in sizes.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        digests[rel] = write_random(top / rel, size)
    result = run_cli("cp", "-r", legacy_server.url(top), f"s3://{bucket}/in/", "--password-file",
                     _pwfile(legacy_server, tmp_path), "--no-progress")
    assert result.code == 0, result.stderr
    s3 = request.getfixturevalue("s3")
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(o["Key"] for o in listed) == sorted(f"in/{rel}" for rel in sizes)
    for rel, digest in digests.items():
        assert object_sha256(s3, bucket, f"in/{rel}") == digest


def test_cli_copy_survives_transfers_that_break_off(
    flaky_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Data connections end early with 426: not a short file, so the part is read again on a new connection."""
    src = folder_in(flaky_server, request) / "flaky.bin"
    digest = write_random(src, 24 * MiB)
    result = run_cli("cp", flaky_server.url(src), f"s3://{bucket}/flaky.bin", "--password-file",
                     _pwfile(flaky_server, tmp_path), "--part-size", "5MiB", "--no-progress", "--debug")
    assert result.code == 0, result.stderr[-3000:]
    assert "retrying reading part" in result.stderr and "broke off after" in result.stderr
    assert object_sha256(request.getfixturevalue("s3"), bucket, "flaky.bin") == digest


def test_cli_copy_survives_cut_control_connections(
    ftp_server: FtpServer, s3_env: dict[str, str], bucket: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A proxy cuts every control connection open each time another 700 bytes of replies passed."""
    src = folder_in(ftp_server, request) / "cut.bin"
    digest = write_random(src, 24 * MiB)
    with CuttingProxy(ftp_server.port, cut_every=700) as proxy:
        url = ftp_server.url(src).replace(f":{ftp_server.port}/", f":{proxy.port}/")
        result = run_cli("cp", url, f"s3://{bucket}/cut.bin", "--password-file", _pwfile(ftp_server, tmp_path),
                         "--part-size", "5MiB", "--retries", "8", "--no-progress")
    assert result.code == 0, result.stderr
    assert proxy.cuts >= 1
    assert object_sha256(request.getfixturevalue("s3"), bucket, "cut.bin") == digest

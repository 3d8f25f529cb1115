"""The HTTP(S) source against real aiohttp servers (s3ferry.testbed_http), and cp from them to S3."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3ferry.backends.http import HttpSource
from s3ferry.core.errors import (
    AuthError,
    NotFoundError,
    PermissionError_,
    S3FerryError,
    SourceChangedError,
    TransferError,
    UsageError,
    UserError,
)
from s3ferry.core.options import HttpOptions
from s3ferry.core.storage import Source
from s3ferry.core.urls import parse
from s3ferry.demo.servers import SeaweedServer, free_port
from servers.http_server import HttpServer
from servers.proxy import CuttingProxy
from support.conformance import SourceConformance, read_range, run, stat_of
from support.helpers import MiB, Run, object_exists, object_sha256, run_cli, uploads_for, write_random

SECRET = "secret123"


def _server(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> HttpServer:
    base = tmp_path_factory.mktemp(name)
    return HttpServer(base / "root", base / "work", **kwargs).start()


@pytest.fixture(scope="module")
def ranged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = _server(tmp_path_factory, "http")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """A server that ignores Range."""
    server = _server(tmp_path_factory, "http-plain", ranges=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def no_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = _server(tmp_path_factory, "http-nohead", head=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = _server(tmp_path_factory, "https", tls=True)
    yield server
    server.stop()


def _folder(server: HttpServer, request: pytest.FixtureRequest) -> Path:
    folder = server.root_dir / request.node.name.replace("[", "_").replace("]", "_")
    folder.mkdir()
    return folder


def source_for(url: str, ca_file: Path | None = None) -> HttpSource:
    return HttpSource(parse(url), HttpOptions(ca_file=ca_file))


# --- the shared conformance suite -----------------------------------------------------------------


class TestHttpSource(SourceConformance):
    @pytest.fixture
    def root(self, ranged: HttpServer, request: pytest.FixtureRequest) -> Path:
        self.server = ranged
        return _folder(ranged, request)

    def make_source(self, path: Path) -> Source:
        return source_for(self.server.url(path))

    def test_directory_is_refused(self, root: Path) -> None:
        # Overridden: HTTP has no "this is a directory" answer. A static server
        # answers a folder's URL with 404 (or an HTML listing, which is a file
        # as far as HTTP goes), so the source can only report "not found".
        (root / "adir").mkdir()
        with pytest.raises(NotFoundError, match="source not found"):
            run(stat_of(self.make_source(root / "adir")))


class TestHttpNoRangeSource(TestHttpSource):
    """The same suite against a server that ignores Range: reads at offsets skip through one GET."""

    @pytest.fixture
    def root(self, plain: HttpServer, request: pytest.FixtureRequest) -> Path:
        self.server = plain
        return _folder(plain, request)


class TestHttpNoHeadSource(TestHttpSource):
    """The same suite against a server refusing HEAD (405): stat falls back to a ranged GET."""

    @pytest.fixture
    def root(self, no_head: HttpServer, request: pytest.FixtureRequest) -> Path:
        self.server = no_head
        return _folder(no_head, request)


# --- source behaviour -----------------------------------------------------------------------------


async def _stat_and_features(source: HttpSource) -> tuple[int, bool]:
    try:
        size = (await source.stat()).size
        return size, source.features.ranged_reads
    finally:
        await source.close()


@pytest.mark.parametrize("which,expected", [("ranged", True), ("plain", False), ("no_head", True)])
def test_stat_finds_out_whether_ranges_work(which: str, expected: bool, request: pytest.FixtureRequest) -> None:
    server: HttpServer = request.getfixturevalue(which)
    path = _folder(server, request) / "f.bin"
    path.write_bytes(os.urandom(1000))
    assert run(_stat_and_features(source_for(server.url(path)))) == (1000, expected)


async def _read_out_of_order(source: HttpSource, reads: list[tuple[int, int]]) -> list[bytes]:
    got = []
    try:
        async with source.reader() as reader:
            for offset, length in reads:
                buf = bytearray(length)
                await reader.read_into(offset, memoryview(buf))
                got.append(bytes(buf))
    finally:
        await source.close()
    return got


def test_stream_reader_goes_back_by_starting_over(plain: HttpServer, request: pytest.FixtureRequest) -> None:
    path = _folder(plain, request) / "f.bin"
    data = os.urandom(3 * MiB)
    path.write_bytes(data)
    reads = [(0, 1000), (1000, 5000), (2 * MiB, 1000), (10, 20), (3 * MiB - 5, 5)]  # forward, skip, back, skip
    got = run(_read_out_of_order(source_for(plain.url(path)), reads))
    assert got == [data[o : o + n] for o, n in reads]


async def _read_after_change(source: HttpSource, path: Path) -> None:
    try:
        await source.stat()
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # same bytes, new ETag
        async with source.reader() as reader:
            await reader.read_into(10, memoryview(bytearray(100)))
    finally:
        await source.close()


@pytest.mark.parametrize("which", ["ranged", "plain"])
def test_a_file_changed_since_stat_is_refused(which: str, request: pytest.FixtureRequest) -> None:
    server: HttpServer = request.getfixturevalue(which)
    path = _folder(server, request) / "f.bin"
    path.write_bytes(os.urandom(100_000))
    with pytest.raises(SourceChangedError, match="changed during the transfer"):
        run(_read_after_change(source_for(server.url(path)), path))


@pytest.mark.parametrize("status,error,retryable", [
    (401, AuthError, False), (403, PermissionError_, False), (410, NotFoundError, False),
    (400, UserError, False), (429, TransferError, True), (500, TransferError, True), (503, TransferError, True),
])
def test_status_codes_map_to_errors(ranged: HttpServer, status: int, error: type[S3FerryError],
                                    retryable: bool) -> None:
    with pytest.raises(error) as caught:
        run(stat_of(source_for(ranged.url(f"__status/{status}"))))
    assert caught.value.retryable is retryable
    if error is not NotFoundError:
        assert f"HTTP {status}" in str(caught.value)


def test_unknown_size_is_refused(ranged: HttpServer) -> None:
    with pytest.raises(UsageError, match="does not report the file's size"):
        run(stat_of(source_for(ranged.url("__nosize"))))


def test_refused_head_on_a_presigned_url_is_retried_as_get(ranged: HttpServer) -> None:
    # A pre-signed URL is signed for GET: HEAD's 403 is not the answer, GET's is.
    url = ranged.url("__status/403") + f"?X-Amz-Signature={SECRET}"
    with pytest.raises(PermissionError_) as caught:
        run(stat_of(source_for(url)))
    assert SECRET not in str(caught.value)


def test_query_string_goes_out_byte_for_byte(ranged: HttpServer) -> None:
    query = "X-Amz-Credential=AKIA%2F20240101%2Fus-east-1%2Fs3&X-Amz-Signature=ab%3D%2Bcd&empty="
    expected = f"/__echo?{query}".encode()
    assert run(read_range(source_for(ranged.url("__echo") + "?" + query), 0, len(expected))) == expected


async def _child_and_parent(source: HttpSource, other: str, size: int) -> tuple[int, int]:
    try:
        child = source.child(other)
        child_size = (await child.stat()).size
        await child.close()  # shares the parent's session: must not close it
        async with source.reader() as reader:
            await reader.read_into(0, memoryview(bytearray(10)))
        return child_size, (await source.stat()).size
    finally:
        await source.close()


def test_child_shares_the_session(ranged: HttpServer, request: pytest.FixtureRequest) -> None:
    folder = _folder(ranged, request)
    (folder / "a").write_bytes(os.urandom(100))
    (folder / "b").write_bytes(os.urandom(200))
    source = source_for(ranged.url(folder / "a") + f"?X-Amz-Signature={SECRET}")
    child_path = source.location.path.rsplit("/", 1)[0] + "/b"
    assert run(_child_and_parent(source, child_path, 200)) == (200, 100)


def test_walk_is_refused(ranged: HttpServer) -> None:
    source = source_for(ranged.url("x"))
    assert not source.features.listing
    with pytest.raises(UsageError, match="cannot be listed"):
        source.walk()


def test_https_verifies_against_the_ca_bundle(tls: HttpServer, request: pytest.FixtureRequest) -> None:
    path = _folder(tls, request) / "f.bin"
    data = os.urandom(70_000)
    path.write_bytes(data)
    assert run(read_range(source_for(tls.url(path), ca_file=tls.ca_file), 5, 60_000)) == data[5:60_005]
    with pytest.raises(UserError, match=r"certificate .* is not trusted") as caught:
        run(stat_of(source_for(tls.url(path))))
    assert caught.value.hint and "--ca-bundle" in caught.value.hint


def test_unreachable_server_is_a_retryable_error() -> None:
    from s3ferry.demo.servers import free_port

    with pytest.raises(TransferError, match="cannot connect") as caught:
        run(stat_of(source_for(f"http://127.0.0.1:{free_port()}/x")))
    assert caught.value.retryable


# --- cp http(s) -> s3 through the CLI -------------------------------------------------------------


def _cp(url: str, bucket: str, *flags: str) -> Run:
    return run_cli("cp", "--no-progress", *flags, url, f"s3://{bucket}/key")


def test_cp_ranged_in_parallel_parts(ranged: HttpServer, s3_env: dict[str, str], s3: SeaweedServer, bucket: str,
                                     request: pytest.FixtureRequest) -> None:
    path = _folder(ranged, request) / "big.bin"
    digest = write_random(path, 40 * MiB + 12345)
    result = run_cli("cp", "--no-progress", "--json", ranged.url(path), f"s3://{bucket}/key")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["parts"] == 6  # 8 MiB parts
    assert object_sha256(s3, bucket, "key") == digest


def test_cp_from_a_server_ignoring_range(plain: HttpServer, s3_env: dict[str, str], s3: SeaweedServer, bucket: str,
                                         request: pytest.FixtureRequest) -> None:
    path = _folder(plain, request) / "big.bin"
    digest = write_random(path, 20 * MiB + 7)
    result = _cp(plain.url(path), bucket, "--part-size", "5MiB", "--read-streams", "4")
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "key") == digest


def test_cp_https_needs_the_ca_bundle(tls: HttpServer, s3_env: dict[str, str], s3: SeaweedServer, bucket: str,
                                      request: pytest.FixtureRequest) -> None:
    path = _folder(tls, request) / "f.bin"
    digest = write_random(path, 9 * MiB)
    refused = _cp(tls.url(path), bucket)
    assert refused.code == 2
    assert "certificate" in refused.stderr and "--ca-bundle" in refused.stderr
    result = _cp(tls.url(path), bucket, "--ca-bundle", str(tls.ca_file))
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "key") == digest


def test_cp_never_shows_the_query_string(ranged: HttpServer, s3_env: dict[str, str], s3: SeaweedServer, bucket: str,
                                         request: pytest.FixtureRequest) -> None:
    path = _folder(ranged, request) / "f.bin"
    digest = write_random(path, 1 * MiB)
    query = f"?X-Amz-Credential=AKIA&X-Amz-Signature={SECRET}"
    result = run_cli("cp", "--json", ranged.url(path) + query, f"s3://{bucket}/key")
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "key") == digest
    missing = _cp(ranged.url(path.with_name("nope.bin")) + query, bucket)
    assert missing.code == 2
    assert "source not found" in missing.stderr
    for out in (result.stdout, result.stderr, missing.stdout, missing.stderr):
        assert SECRET not in out


def test_cp_missing_file_exits_2(ranged: HttpServer, s3_env: dict[str, str], bucket: str) -> None:
    result = _cp(ranged.url("no/such/file.bin"), bucket)
    assert result.code == 2
    assert "source not found: http://127.0.0.1" in result.stderr


def test_cp_empty_file(ranged: HttpServer, s3_env: dict[str, str], s3: SeaweedServer, bucket: str,
                       request: pytest.FixtureRequest) -> None:
    path = _folder(ranged, request) / "empty"
    path.write_bytes(b"")
    result = _cp(ranged.url(path), bucket)
    assert result.code == 0, result.stderr
    assert s3.client().head_object(Bucket=bucket, Key="key")["ContentLength"] == 0


def test_cp_detects_a_file_changed_mid_transfer(tmp_path_factory: pytest.TempPathFactory, s3_env: dict[str, str],
                                                s3: SeaweedServer, bucket: str) -> None:
    # The server replaces the file (same size, new mtime, so a new ETag) just
    # before it answers the first request for bytes at 5 MiB or later: part 2.
    server = _server(tmp_path_factory, "http-change", change_at=5 * MiB)
    try:
        path = server.root_dir / "f.bin"
        write_random(path, 15 * MiB)
        result = _cp(server.url(path), bucket, "--part-size", "5MiB", "--read-streams", "1", "--upload-streams", "1")
    finally:
        server.stop()
    assert "changed f.bin" in (server.workdir / "http.log").read_text()  # the hook fired
    assert result.code == 1, result.stderr
    assert "changed during the transfer" in result.stderr
    assert not object_exists(s3, bucket, "key")
    assert uploads_for(s3, bucket) == []


def test_cp_survives_connections_cut_mid_part(ranged: HttpServer, s3_env: dict[str, str], s3: SeaweedServer,
                                              bucket: str, request: pytest.FixtureRequest) -> None:
    path = _folder(ranged, request) / "f.bin"
    digest = write_random(path, 20 * MiB + 3)
    # Every 7 MiB served, all connections drop: most 5 MiB parts break once and are read again.
    with CuttingProxy(ranged.port, cut_every=7 * MiB) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/{path.relative_to(ranged.root_dir).as_posix()}"
        result = _cp(url, bucket, "--part-size", "5MiB", "--read-streams", "1")
    assert proxy.cuts >= 2
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "key") == digest


def test_cp_without_ranges_restarts_a_broken_stream(tmp_path_factory: pytest.TempPathFactory,
                                                    s3_env: dict[str, str], s3: SeaweedServer, bucket: str) -> None:
    # The one GET breaks inside part 2; the retry starts over and skips part 1's bytes.
    server = _server(tmp_path_factory, "http-cut", ranges=False, cut_at=7 * MiB)
    try:
        path = server.root_dir / "f.bin"
        digest = write_random(path, 12 * MiB + 1)
        result = _cp(server.url(path), bucket, "--part-size", "5MiB")
    finally:
        server.stop()
    assert "cut a GET of f.bin" in (server.workdir / "http.log").read_text()
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "key") == digest


def test_http_proxy_variables_are_honoured(ranged: HttpServer, request: pytest.FixtureRequest,
                                           tmp_path: Path) -> None:
    folder = _folder(ranged, request)
    (folder / "p.bin").write_bytes(b"through the proxy or not")
    dead = f"http://127.0.0.1:{free_port()}"
    url = ranged.url(folder / "p.bin")
    through = run_cli("cp", url, str(tmp_path / "a"), "--retries", "0",
                      env={"HTTP_PROXY": dead, "http_proxy": dead, "NO_PROXY": "", "no_proxy": ""})
    assert through.code == 1, through.stderr
    bypass = run_cli("cp", url, str(tmp_path / "b"),
                     env={"HTTP_PROXY": dead, "http_proxy": dead, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    assert bypass.code == 0, bypass.stderr
    assert (tmp_path / "b").read_bytes() == b"through the proxy or not"

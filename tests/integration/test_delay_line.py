"""The delay-line proxy (a WAN link on loopback), then s3ferry through it in both directions.

The proxy's own tests use plain sockets against an echo server; the last two
copy a few MiB sftp -> s3 and s3 -> sftp with the OpenSSH sshd 50 ms away,
and check the bytes, not the speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.delay_line import DelayLine, LinkSpec, known_hosts_via, link_rate
from support.helpers import MiB, object_sha256, run_cli, write_random
from support.wan import RTT, sftp_across_wan, wan_url


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(256 * 1024):
            conn.sendall(data)


def _serve(listener: socket.socket, handler: Callable[[socket.socket], None]) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the test is over
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on loopback, one thread per connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=_serve, args=(listener, _echo), daemon=True).start()
        yield listener.getsockname()[1]
        listener.shutdown(socket.SHUT_RDWR)


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    """Send ``payload`` while reading its echo back (a second thread, so neither side blocks the other)."""
    sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
    sender.start()
    got = bytearray()
    while len(got) < len(payload):
        chunk = sock.recv(256 * 1024)
        assert chunk, "connection closed early"
        got += chunk
    sender.join()
    return bytes(got)


def test_round_trip_takes_the_rtt(echo_port: int) -> None:
    with DelayLine(echo_port, rtt=RTT, rate=125e6) as link, \
            socket.create_connection(("127.0.0.1", link.port)) as sock:
        start = time.monotonic()
        assert exchange(sock, b"hello") == b"hello"
        first = time.monotonic() - start  # includes the handshake's round trip: 2 RTT
        times = []
        for _ in range(5):
            start = time.monotonic()
            assert exchange(sock, b"ping") == b"ping"
            times.append(time.monotonic() - start)
    # The lower bounds are the delay line's promise; the upper ones only say it adds no delay of its own
    # beyond what a loaded 2-core machine does to any process (seen: 2 ms over 2 RTT at load 5).
    assert 2 * RTT <= first < 2 * RTT + 0.25
    assert min(times) >= RTT
    assert min(times) < RTT + 0.05  # the best of five exchanges


def test_bulk_rate_stays_under_the_cap() -> None:
    cap = 20e6
    rate = link_rate(LinkSpec(RTT, cap), 16 * MiB)
    assert 0.8 * cap <= rate <= 1.05 * cap


def test_bytes_arrive_intact_and_in_order_both_ways(echo_port: int) -> None:
    payload = os.urandom(8 * MiB)
    with DelayLine(echo_port, rtt=RTT, rate=100e6) as link, \
            socket.create_connection(("127.0.0.1", link.port)) as sock:
        assert hashlib.sha256(exchange(sock, payload)).digest() == hashlib.sha256(payload).digest()


def test_many_connections_at_once(echo_port: int) -> None:
    results: dict[int, bool] = {}

    def client(n: int, port: int) -> None:
        payload = os.urandom(128 * 1024)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            results[n] = exchange(sock, payload) == payload

    with DelayLine(echo_port, rtt=RTT, rate=125e6) as link:
        start = time.monotonic()
        threads = [threading.Thread(target=client, args=(n, link.port)) for n in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        elapsed = time.monotonic() - start
    assert results == dict.fromkeys(range(50), True)
    assert elapsed < 20 * RTT  # concurrent: 50 connections one after another would take >= 100 RTT


def _swallow_nothing(conn: socket.socket, stop: threading.Event) -> None:
    with conn:
        stop.wait(30)


def test_a_receiver_that_does_not_read_back_pressures_the_sender() -> None:
    """The proxy holds at most rate x RTT + slack (+ one read); the rest waits in the kernel, then blocks."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=_serve, args=(listener, lambda c: _swallow_nothing(c, stop)), daemon=True).start()
        spec = LinkSpec(RTT, 10e6)
        with DelayLine(listener.getsockname()[1], spec.rtt, spec.rate) as link, \
                socket.create_connection(("127.0.0.1", link.port)) as sock:
            sock.settimeout(1.0)
            sent = 0
            with pytest.raises(TimeoutError):
                while sent < 200 * MiB:
                    sent += sock.send(bytes(256 * 1024))
            (conn,) = link.server.connections
            assert conn.client.outgoing is not None
            peak = conn.client.outgoing.peak_queued
            stop.set()
    assert spec.queue_limit <= peak <= spec.queue_limit + 512 * 1024
    assert sent < 64 * MiB  # the sender was stopped, not buffered for without bound


def test_close_ends_open_connections(echo_port: int) -> None:
    link = DelayLine(echo_port, rtt=RTT, rate=125e6)
    with link, socket.create_connection(("127.0.0.1", link.port)) as sock:
        assert exchange(sock, b"x") == b"x"
        link.close()
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # an abort: as good as an end of file here
            assert sock.recv(1) == b""
        assert not link.thread.is_alive()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", link.port), timeout=5).close()


@pytest.fixture
def sftp_50ms(ssh: testbed.SshServer, tmp_path: Path) -> Iterator[tuple[DelayLine, list[str]]]:
    """The test sshd behind a 50 ms, 125 MB/s link; and the cp flags that trust its key on the proxy's port."""
    with sftp_across_wan(ssh, tmp_path) as wan:
        yield wan.link, wan.flags


@pytest.mark.usefixtures("s3_env")
def test_sftp_to_s3_across_a_wan(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                 sftp_50ms: tuple[DelayLine, list[str]]) -> None:
    link, flags = sftp_50ms
    src = ssh.root / f"wan-up-{bucket}.bin"
    digest = write_random(src, 5 * MiB + 123)
    result = run_cli("cp", wan_url(ssh, link, src), f"s3://{bucket}/wan.bin", "--no-progress", *flags)
    assert result.code == 0, result.stderr
    assert object_sha256(s3, bucket, "wan.bin") == digest


@pytest.mark.usefixtures("s3_env")
def test_s3_to_sftp_across_a_wan(ssh: testbed.SshServer, bucket: str, tmp_path: Path,
                                 sftp_50ms: tuple[DelayLine, list[str]]) -> None:
    link, flags = sftp_50ms
    local = tmp_path / "wan-down.bin"
    digest = write_random(local, 5 * MiB + 321)
    assert run_cli("cp", str(local), f"s3://{bucket}/wan.bin", "--no-progress").code == 0
    dest = ssh.root / f"wan-down-{bucket}.bin"
    result = run_cli("cp", f"s3://{bucket}/wan.bin", wan_url(ssh, link, dest), "--no-progress", *flags)
    assert result.code == 0, result.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest


@contextlib.contextmanager
def second_sshd(ssh: testbed.SshServer, folder: Path, setting: str, instead: str) -> Iterator[int]:
    """A second sshd on the same keys and folders, with ``instead`` for the test sshd's ``setting`` line
    (its log: ``folder/sshd.log``): its port."""
    port = testbed.free_port()
    config = (ssh.base / "sshd_config").read_text()
    assert setting in config and f"Port {ssh.port}\n" in config
    config = config.replace(setting, instead).replace(f"Port {ssh.port}\n", f"Port {port}\n")
    config = config.replace(f"PidFile {ssh.base / 'sshd.pid'}", f"PidFile {folder / 'sshd.pid'}")
    (folder / "sshd_config").write_text(config)
    with open(folder / "sshd.log", "ab") as log:
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(folder / "sshd_config")],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        testbed.wait_for_port(port, 20, proc)
        yield port
    finally:
        testbed.stop_process(proc)


@pytest.mark.usefixtures("s3_env")
def test_small_files_on_loopback_share_one_connection(ssh: testbed.SshServer, s3: testbed.SeaweedServer,
                                                     bucket: str, tmp_path: Path) -> None:
    """Reads of small files share an open connection whatever the round trip: a tree of 60 small files logs
    in once (a connection per file in flight costs a key exchange and an sshd process each, more CPU than
    the files: 3.0 s against 2.6 s for 300 files of 64 KiB, measured)."""
    with second_sshd(ssh, tmp_path, "LogLevel ERROR", "LogLevel INFO") as port:
        tree = _small_tree(ssh.root / f"shared-{bucket}", 60)
        _copy_tree_via(port, ssh, s3, bucket, tmp_path, f"shared-{bucket}", tree)
        logins = (tmp_path / "sshd.log").read_text().count("Accepted publickey")
    assert logins == 1, logins


def _copy_tree_via(port: int, ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str, tmp_path: Path,
                   folder: str, tree: dict[str, bytes]) -> None:
    """``cp -r`` of ``ssh.root / folder`` through the sshd on ``port`` into ``s3://bucket/folder/``: exit 0 and
    every object holding its file's bytes."""
    url = ssh.url(ssh.root / folder).replace(f"@127.0.0.1:{ssh.port}/", f"@127.0.0.1:{port}/")
    known_hosts = known_hosts_via(ssh.known_hosts, port, tmp_path / "known_hosts_port")
    result = run_cli("cp", "-r", url, f"s3://{bucket}/{folder}/", "--no-progress", "--identity", str(ssh.user_key),
                     "--known-hosts", str(known_hosts))
    assert result.code == 0, result.stderr
    client = s3.client()
    for rel, data in tree.items():
        assert client.get_object(Bucket=bucket, Key=f"{folder}/{rel}")["Body"].read() == data, rel


@pytest.fixture
def sshd_two_sessions(ssh: testbed.SshServer, tmp_path: Path) -> Iterator[int]:
    """A second sshd that allows two sessions per connection (``MaxSessions 2``, as a partner's server
    may): its port."""
    with second_sshd(ssh, tmp_path, "MaxSessions 100", "MaxSessions 2") as port:
        yield port


@pytest.mark.usefixtures("s3_env")
def test_s3_to_sftp_backs_off_when_the_server_refuses_sessions(ssh: testbed.SshServer, bucket: str,
                                                               tmp_path: Path, sshd_two_sessions: int) -> None:
    """Across 50 ms s3ferry wants several write sessions on its one connection; a server that allows
    two gets written through two, and the copy succeeds."""
    local = tmp_path / "wan-down.bin"
    digest = write_random(local, 6 * MiB + 321)
    assert run_cli("cp", str(local), f"s3://{bucket}/wan.bin", "--no-progress").code == 0
    dest = ssh.root / f"wan-sessions-{bucket}.bin"
    with sftp_across_wan(ssh, tmp_path, sshd_two_sessions) as wan:
        result = run_cli("cp", f"s3://{bucket}/wan.bin", wan.url(dest), "--no-progress", "-v", *wan.flags)
    assert result.code == 0, result.stderr
    assert "opened 2 of " in result.stderr and "writing through those" in result.stderr, result.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest


def _small_tree(top: Path, files: int) -> dict[str, bytes]:
    """``files`` small random files in three folders (one nested) below ``top``: {relative path: bytes}."""
    tree: dict[str, bytes] = {}
    for n in range(files):
        rel = f"{('a', 'b', 'b/c')[n % 3]}/f{n:03}.bin"
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(1000 + 97 * n)
        (top / rel).write_bytes(data)
        tree[rel] = data
    return tree


@pytest.mark.usefixtures("s3_env")
def test_a_tree_both_ways_across_a_wan(ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
                                      sftp_50ms: tuple[DelayLine, list[str]]) -> None:
    """Many small files in flight on the one connection, the folders listed at once, the destination
    listed instead of a stat per file: every byte arrives, and a second run copies nothing."""
    link, flags = sftp_50ms
    src = ssh.root / f"wan-tree-{bucket}"
    tree = _small_tree(src, 60)
    up = run_cli("cp", "-r", wan_url(ssh, link, src), f"s3://{bucket}/t/", "--no-progress", "--json", *flags)
    assert up.code == 0, up.stderr
    client = s3.client()
    for rel, data in tree.items():
        assert client.get_object(Bucket=bucket, Key=f"t/{rel}")["Body"].read() == data, rel
    dest = ssh.root / f"wan-tree-back-{bucket}"
    down = run_cli("cp", "-r", f"s3://{bucket}/t/", wan_url(ssh, link, dest), "--no-progress", "--json", *flags)
    assert down.code == 0, down.stderr
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == tree
    again = run_cli("cp", "-r", f"s3://{bucket}/t/", wan_url(ssh, link, dest), "--no-progress", "--json", *flags)
    assert again.code == 0, again.stderr
    assert '"copied": 0' in again.stdout and '"skipped": 60' in again.stdout, again.stdout


@pytest.fixture
def sshd_few_startups(ssh: testbed.SshServer, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A second sshd that drops connections beyond four unauthenticated ones (``MaxStartups 4``): its
    port and its log."""
    with second_sshd(ssh, tmp_path, "MaxStartups 100:30:200", "MaxStartups 4") as port:
        yield port, tmp_path / "sshd.log"


@pytest.mark.usefixtures("s3_env")
def test_many_small_files_on_loopback_stay_within_the_servers_startups(
        ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str, tmp_path: Path,
        sshd_few_startups: tuple[int, Path]) -> None:
    """Dozens of small files at once on a short round trip: they share an open connection, and more
    connections are opened one at a time and capped, so a server allowing four unauthenticated connections
    (sshd may count one of ours for a moment after it logged in) drops none of them; uncapped, dozens
    start at once."""
    port, sshd_log = sshd_few_startups
    tree = _small_tree(ssh.root / f"startups-{bucket}", 80)
    _copy_tree_via(port, ssh, s3, bucket, tmp_path, f"startups-{bucket}", tree)
    # sshd logs "beginning MaxStartups throttling" when it starts dropping (the copy then survives only
    # by retrying): it must never have to
    logged = sshd_log.read_text()
    assert "MaxStartups" not in logged and "drop connection" not in logged.lower(), logged

"""--executor dask on a real local cluster: a scheduler and two worker processes started here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, json_lines, object_sha256, run_cli, sftp_flags, uploads_for, write_random

BIN = Path(sys.executable).parent


class Cluster:
    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base, self.env = base, env
        self.port = testbed.free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.base / f"{name}.log", "ab") as log:
            return subprocess.Popen([str(BIN / "dask"), *args], stdout=log, stderr=log, env=self.env,
                                    start_new_session=True)

    def start(self) -> Cluster:
        self.scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--no-dashboard"], "scheduler")
        testbed.wait_for_port(self.port, 60, self.scheduler)
        for i in range(2):
            self.workers.append(self._spawn(["worker", self.address, "--nworkers", "1", "--nthreads", "2",
                                             "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}"],
                                            f"worker{i}"))
        self._wait_for_workers(2)
        return self

    def _wait_for_workers(self, count: int) -> None:
        from distributed import Client

        deadline = time.time() + 60
        with Client(self.address, timeout="30s") as client:
            while len(client.scheduler_info()["workers"]) < count:
                if time.time() > deadline:
                    raise RuntimeError("Dask workers did not come up")
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path, s3_env: dict[str, str]) -> Iterator[Cluster]:
    env = {**os.environ, **s3_env}
    running = Cluster(tmp_path, env).start()
    yield running
    running.stop()


def test_one_file_spread_over_the_workers(cluster: Cluster, ssh: testbed.SshServer, bucket: str,
                                          s3: testbed.SeaweedServer) -> None:
    src = ssh.root / "dask-big.bin"
    digest = write_random(src, 300 * MiB)
    result = run_cli("cp", ssh.url(src), f"s3://{bucket}/big.bin", "--executor", "dask", "--scheduler",
                     cluster.address, "--json", *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["workers"]) == 2, report["workers"]  # both worker processes sent parts
    assert str(os.getpid()) not in " ".join(report["workers"])
    assert object_sha256(s3, bucket, "big.bin") == digest
    os.remove(src)


def test_a_tree_spread_over_the_workers(cluster: Cluster, tmp_path: Path, bucket: str,
                                        s3: testbed.SeaweedServer) -> None:
    top = tmp_path / "tree"
    digests = {}
    for i in range(200):
        digests[f"d{i % 5}/f{i:03d}.bin"] = write_random(_mk(top / f"d{i % 5}" / f"f{i:03d}.bin"), 1000 + i)
    result = run_cli("cp", "-r", str(top), f"s3://{bucket}/t/", "--executor", "dask", "--scheduler",
                     cluster.address, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["copied"] == 200 and len(report["workers"]) == 2
    for rel in list(digests)[::20]:
        assert object_sha256(s3, bucket, f"t/{rel}") == digests[rel]


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_worker_killed_mid_transfer(cluster: Cluster, ssh: testbed.SshServer, bucket: str,
                                    s3: testbed.SeaweedServer) -> None:
    src = ssh.root / "dask-kill.bin"
    digest = write_random(src, 300 * MiB)
    args = [str(BIN / "s3ferry"), "cp", ssh.url(src), f"s3://{bucket}/k.bin", "--executor", "dask",
            "--scheduler", cluster.address, "--json", *sftp_flags(ssh)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    killed: list[float] = []
    stop = threading.Event()

    def kill_once_parts_are_stored() -> None:
        # Not a timer: the copy takes 2-3 s on a quiet machine and much longer on a loaded one.
        client = s3.client()
        while not stop.wait(0.05):
            ups = client.list_multipart_uploads(Bucket=bucket, Prefix="k.bin").get("Uploads", [])
            if ups and len(client.list_parts(Bucket=bucket, Key="k.bin", UploadId=ups[0]["UploadId"])
                           .get("Parts", [])) >= 2:
                os.killpg(cluster.workers[0].pid, signal.SIGKILL)
                killed.append(time.monotonic())
                return

    killer = threading.Thread(target=kill_once_parts_are_stored, daemon=True)
    killer.start()
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        stop.set()
        killer.join(10)
    ended = time.monotonic()
    assert killed and killed[0] < ended - 0.5, "the worker was not killed during the transfer"
    assert proc.returncode == 0, err
    assert object_sha256(s3, bucket, "k.bin") == digest
    assert uploads_for(s3, bucket) == []
    os.remove(src)


def test_pull_and_push_on_the_cluster(cluster: Cluster, ssh: testbed.SshServer, bucket: str,
                                      s3: testbed.SeaweedServer) -> None:
    drop = ssh.root / "dask-drop"
    digests = {f"f{i}.bin": write_random(_mk(drop / f"f{i}.bin"), 100_000 + i) for i in range(6)}
    pulled = run_cli("pull", ssh.url(drop), f"s3://{bucket}/in/", "--executor", "dask", "--scheduler",
                     cluster.address, "--json", *sftp_flags(ssh))
    assert pulled.code == 0, pulled.stderr
    report = json.loads(pulled.stdout)
    assert (report["copied"], report["archived"]) == (6, 6)
    for name, digest in digests.items():
        assert object_sha256(s3, bucket, f"in/{name}") == digest
        assert (drop / ".done" / name).exists()
    inbox = ssh.root / "dask-inbox"
    pushed = run_cli("push", f"s3://{bucket}/in/", ssh.url(inbox), "--executor", "dask", "--scheduler",
                     cluster.address, "--json", *sftp_flags(ssh))
    assert pushed.code == 0, pushed.stderr
    assert json.loads(pushed.stdout)["copied"] == 6
    again = run_cli("push", f"s3://{bucket}/in/", ssh.url(inbox), "--json", *sftp_flags(ssh))
    assert json.loads(again.stdout)["copied"] == 0  # marked as delivered by the cluster run
    for name, digest in digests.items():
        import hashlib

        assert hashlib.sha256((inbox / name).read_bytes()).hexdigest() == digest


def test_parts_larger_than_the_budget_still_run_on_the_workers(cluster: Cluster, tmp_path: Path, bucket: str,
                                                                s3: testbed.SeaweedServer) -> None:
    # Locally such parts would be streamed; with an executor nothing is buffered on the coordinator.
    src = tmp_path / "big-parts.bin"
    digest = write_random(src, 70 * MiB)
    result = run_cli("cp", str(src), f"s3://{bucket}/bp.bin", "--part-size", "32MiB", "--executor", "dask",
                     "--scheduler", cluster.address, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["workers"] and report["parts"] == 3
    assert object_sha256(s3, bucket, "bp.bin") == digest


def test_slowdown_on_the_workers_is_retried_with_backoff(cluster: Cluster, tmp_path: Path, bucket: str,
                                                         s3: testbed.SeaweedServer) -> None:
    # 60% of the uploads answered 503 SlowDown: Dask's own retry (one, at once) could not carry 16 parts through;
    # the workers back off and retry like the local engine.
    src = tmp_path / "slow.bin"
    digest = write_random(src, 16 * 5 * MiB)
    with S3FaultProxy(s3.s3_port, slowdown_rate=0.6, seed=3) as proxy:
        result = run_cli("cp", str(src), f"s3://{bucket}/slow.bin", "--part-size", "5MiB", "--retries", "12",
                         "--endpoint-url", proxy.url, "--executor", "dask", "--scheduler", cluster.address,
                         "--json")
    assert result.code == 0, result.stderr
    assert proxy.count("UploadPart", 503) >= 4
    assert json.loads(result.stdout)["workers"]
    assert object_sha256(s3, bucket, "slow.bin") == digest


def test_a_part_refused_on_a_worker_fails_with_one_line(cluster: Cluster, tmp_path: Path, bucket: str,
                                                        s3: testbed.SeaweedServer) -> None:
    src = tmp_path / "refused.bin"
    write_random(src, 12 * 5 * MiB)
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.fail_next = [("UploadPart", 403, "AccessDenied")] * 40  # every try of every part
        result = run_cli("cp", str(src), f"s3://{bucket}/refused.bin", "--part-size", "5MiB", "--endpoint-url",
                         proxy.url, "--executor", "dask", "--scheduler", cluster.address)
    assert result.code == 2, result.stderr  # permission denied is a user error (DESIGN: exit codes)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "access denied" in lines[0], result.stderr  # no warnings from cancelling the rest
    # the other parts were cancelled, not all tried: each part is tried twice (Dask's one retry)
    assert proxy.count("UploadPart") < 2 * 12


def test_workers_take_large_buffers_from_the_heap(cluster: Cluster, tmp_path: Path, bucket: str) -> None:
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc mmap (and fault in)
    # every buffer over 128 KiB: 3x the CPU per byte. After a task the worker takes them from the heap.
    from distributed import Client

    def mmapped_blocks_for_1mib() -> tuple[str | None, int]:
        import ctypes
        import os as os_

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                         "fordblks", "keepcost")]

        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = MallInfo2
        before = mallinfo2().hblks
        block = bytearray(1 << 20)
        during = mallinfo2().hblks
        del block
        return os_.environ.get("MALLOC_TRIM_THRESHOLD_"), during - before

    with Client(cluster.address, timeout="30s") as client:
        untouched = client.run(mmapped_blocks_for_1mib)
        assert all(v == ("65536", 1) for v in untouched.values()), untouched  # the trap is real
        src = tmp_path / "one.bin"
        write_random(src, 60 * MiB)
        result = run_cli("cp", str(src), f"s3://{bucket}/one.bin", "--part-size", "5MiB", "--executor", "dask",
                         "--scheduler", cluster.address, "--json")
        assert result.code == 0, result.stderr
        assert len(json.loads(result.stdout)["workers"]) == 2
        tuned = client.run(mmapped_blocks_for_1mib)
        assert all(v == ("65536", 0) for v in tuned.values()), tuned


def test_a_local_destination_is_written_here_not_on_the_workers(cluster: Cluster, ssh: testbed.SshServer,
                                                                tmp_path: Path) -> None:
    # A worker on another machine cannot write this machine's disk: the parts of one file stay here.
    import hashlib

    src = ssh.root / "dask-down.bin"
    digest = write_random(src, 40 * MiB)
    out = tmp_path / "down"
    result = run_cli("cp", ssh.url(src), f"{out}/", "--executor", "dask", "--scheduler", cluster.address, "--json",
                     *sftp_flags(ssh))
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["workers"] == []
    assert hashlib.sha256((out / src.name).read_bytes()).hexdigest() == digest
    os.remove(src)


def test_a_tree_on_the_workers_is_recorded_once_in_the_audit_trail(cluster: Cluster, tmp_path: Path,
                                                                   bucket: str) -> None:
    """The workers copy the files; the coordinator records each delivery (the workers, which here share its
    state dir, record nothing)."""
    top = tmp_path / "tree"
    for i in range(6):
        write_random(_mk(top / f"f{i}.bin"), 100 + i)
    state = tmp_path / "state"
    result = run_cli("cp", "-r", str(top), f"s3://{bucket}/a/", "--executor", "dask", "--scheduler",
                     cluster.address, "--state-dir", str(state), "--no-progress")
    assert result.code == 0, result.stderr
    entries = json_lines((state / "audit.jsonl").read_text())
    assert sorted((e["destination"], e["size"]) for e in entries) == [(f"s3://{bucket}/a/f{i}.bin", 100 + i)
                                                                      for i in range(6)]
    assert all(e["verified"] and e["op"] == "cp" for e in entries)
    assert run_cli("audit", "verify", "--log", str(state / "audit.jsonl")).code == 0

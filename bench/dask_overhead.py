"""The Dask executor against the local one on this machine: same file, same servers, alternating rounds.

    .venv/bin/python bench/dask_overhead.py --size 1GiB --rounds 3

Starts sshd and SeaweedFS (s3ferry.testbed), a Dask scheduler and two worker
processes (one thread pair each) on loopback, writes a random file into the
SFTP root, then per round runs ``s3ferry cp`` (local executor) and
``s3ferry cp --executor dask`` on it into fresh keys, and prints wall times,
peak RSS of the coordinating process and the median of the per-round ratios.
The workers' own memory is not counted (they are other processes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import become_subreaper, run_measured
from run import parse_size, write_random
from s3ferry.demo import servers as testbed

BIN = Path(sys.executable).parent


def start_cluster(logs: Path, env: dict[str, str]) -> tuple[str, list[subprocess.Popen[bytes]]]:
    port = testbed.free_port()
    procs = []
    with open(logs / "scheduler.log", "ab") as log:
        procs.append(subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                       "--no-dashboard"], stdout=log, stderr=log, env=env, start_new_session=True))
    testbed.wait_for_port(port, 60, procs[0])
    address = f"tcp://127.0.0.1:{port}"
    for i in range(2):
        with open(logs / f"worker{i}.log", "ab") as log:
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "2",
                                           "--no-dashboard", "--host", "127.0.0.1"], stdout=log, stderr=log, env=env,
                                          start_new_session=True))
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    return address, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dask-args", default="", help='extra flags for the dask runs only, e.g. "--part-size 32MiB"')
    args = parser.parse_args()
    size = parse_size(args.size)
    become_subreaper()
    base = Path(tempfile.mkdtemp(prefix="s3ferry-dask-bench-"))
    try:
        run_rounds(args, size, base)
    except BaseException:
        shutil.rmtree(base / "bed", ignore_errors=True)  # the data; the logs stay for a look
        print(f"logs: {base / 'logs'}", file=sys.stderr)
        raise
    shutil.rmtree(base, ignore_errors=True)


def run_rounds(args: argparse.Namespace, size: int, base: Path) -> None:
    logs = base / "logs"
    logs.mkdir()
    with testbed.servers(base / "bed") as (ssh, s3):
        env = {**os.environ, **s3.env(), "S3FERRY_STATE_DIR": str(base / "state")}
        s3.client().create_bucket(Bucket="bench")
        src = ssh.root / "bench.bin"
        write_random(src, size)
        address, procs = start_cluster(logs, env)
        try:
            common = [str(BIN / "s3ferry"), "cp", ssh.url(src), "--identity", str(ssh.user_key),
                      "--known-hosts", str(ssh.known_hosts), "--no-progress", "--json"]
            walls: dict[str, list[float]] = {"local": [], "dask": []}
            rss: dict[str, list[int]] = {"local": [], "dask": []}
            for r in range(args.rounds):
                for mode in ("local", "dask"):
                    extra = (["--executor", "dask", "--scheduler", address, *args.dask_args.split()]
                             if mode == "dask" else [])
                    subprocess.run(["sync"], check=False)
                    res = run_measured([*common[:3], f"s3://bench/{mode}-{r}.bin", *common[3:], *extra], env, logs,
                                       f"{mode}-{r}")
                    if res.returncode != 0:
                        raise SystemExit(f"{mode} round {r + 1} failed: {res.stderr.strip()}")
                    walls[mode].append(res.wall_s)
                    rss[mode].append(res.peak_rss_bytes)
                    print(f"round {r + 1} {mode:5s} {res.wall_s:7.2f} s  {size / res.wall_s / 1e6:6.1f} MB/s  "
                          f"coordinator peak RSS {res.peak_rss_bytes / 1e6:6.1f} MB", flush=True)
            ratios = [d / loc for d, loc in zip(walls["dask"], walls["local"], strict=True)]
            print(f"\nmedian wall: local {statistics.median(walls['local']):.2f} s, dask "
                  f"{statistics.median(walls['dask']):.2f} s; dask/local per round "
                  f"{' '.join(f'{x:.3f}' for x in ratios)}, median {statistics.median(ratios):.3f}")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


if __name__ == "__main__":
    main()

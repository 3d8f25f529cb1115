"""``s3ferry verify`` of an SFTP file against its S3 object vs ``cp`` reading the same file (issue 20).

    PYTHONPATH=$PWD/src .venv/bin/python bench/verify_speed.py --size 2GiB --rounds 2

Starts sshd and SeaweedFS (s3ferry.testbed), writes a random file into the SFTP
root and copies it once into S3 (the object verify compares with). Then per
round, alternating: ``s3ferry cp`` SFTP -> S3 (what ``cp`` costs: the read and
the upload), ``s3ferry cp`` SFTP -> a local file (the read, and a write to this
machine's disk) and ``s3ferry verify`` SFTP vs S3 (the read alone: the object's
CRC32C is stored, so only the SFTP side is streamed). Prints wall times, MB/s,
peak RSS, bytes verify wrote to disk, the load average, and the median ratios
verify / cp.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import ChildResult, become_subreaper, run_measured
from run import parse_size, write_random
from s3ferry.demo import servers as testbed

BIN = Path(sys.executable).parent
MODES = ("cp-s3", "cp-local", "verify")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2GiB")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    size = parse_size(args.size)
    become_subreaper()
    base = Path(tempfile.mkdtemp(prefix="s3ferry-verify-bench-"))
    try:
        run_rounds(args.rounds, size, base)
    finally:
        print(f"logs: {base / 'logs'}", file=sys.stderr)
        shutil.rmtree(base / "bed", ignore_errors=True)
        shutil.rmtree(base / "out", ignore_errors=True)


def run_rounds(rounds: int, size: int, base: Path) -> None:
    logs, out = base / "logs", base / "out"
    logs.mkdir()
    out.mkdir()
    with testbed.servers(base / "bed") as (ssh, s3):
        env = {**os.environ, **s3.env(), "S3FERRY_STATE_DIR": str(base / "state")}
        s3.client().create_bucket(Bucket="bench")
        src = ssh.root / "bench.bin"
        write_random(src, size)
        keys = ["--identity", str(ssh.user_key), "--known-hosts", str(ssh.known_hosts)]
        first = subprocess.run([str(BIN / "s3ferry"), "cp", ssh.url(src), "s3://bench/bench.bin", "--no-progress",
                                *keys], env=env, capture_output=True, text=True, check=False)
        if first.returncode != 0:
            raise SystemExit(f"the first copy failed: {first.stderr.strip()}")
        argv = {  # --overwrite: cp would otherwise skip a destination that already matches
            "cp-s3": ["cp", ssh.url(src), "s3://bench/again.bin", "--overwrite", "--no-progress", "--json", *keys],
            "cp-local": ["cp", ssh.url(src), str(out / "bench.bin"), "--overwrite", "--no-progress", "--json", *keys],
            "verify": ["verify", ssh.url(src), "s3://bench/bench.bin", "--json", *keys],
        }
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        for r in range(rounds):
            for mode in MODES:
                subprocess.run(["sync"], check=False)
                load = os.getloadavg()[0]
                res = run_measured([str(BIN / "s3ferry"), *argv[mode]], env, logs, f"{mode}-{r}")
                check(mode, res, size)
                walls[mode].append(res.wall_s)
                print(f"round {r + 1} {mode:8s} {res.wall_s:7.2f} s  {size / res.wall_s / 1e6:6.1f} MB/s  "
                      f"peak RSS {res.peak_rss_bytes / 1e6:6.1f} MB  disk writes {res.disk_write_bytes / 1e3:8.0f} kB"
                      f"  load before {load:.2f}", flush=True)
                (out / "bench.bin").unlink(missing_ok=True)
        for other in ("cp-s3", "cp-local"):
            ratios = [v / c for v, c in zip(walls["verify"], walls[other], strict=True)]
            print(f"verify / {other}: per round {' '.join(f'{x:.3f}' for x in ratios)}, "
                  f"median {statistics.median(ratios):.3f}")


def check(mode: str, res: ChildResult, size: int) -> None:
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed ({res.returncode}): {res.stderr.strip()}")
    if mode == "verify":
        found = json.loads(res.stdout)
        if found["status"] != "identical" or found["bytes_read"] != size:  # the SFTP side read once, S3 not
            raise SystemExit(f"verify did not compare the bytes as expected: {found}")


if __name__ == "__main__":
    main()

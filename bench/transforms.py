"""Transforms in flight (issue 19): what a stage costs, against the untransformed copy and the stage's limit.

    PYTHONPATH=$PWD/src .venv/bin/python bench/transforms.py --size 2GiB --rounds 1

Starts sshd and SeaweedFS (s3ferry.testbed), writes a CSV-like file into the
SFTP root (a 64 MiB block of rows with random numbers, repeated: compressible
but not trivial; the repetition is farther apart than zstd's and gzip's
windows at these levels, so it does not help them) and its ``zstd -3`` form.
Then per round, one after the other:

* ``cp`` SFTP -> S3 untransformed (the copy a stage is added to),
* ``cp`` SFTP -> S3 ``--compress zstd`` (level 3) and ``--compress gzip`` (level 6),
* ``cp`` SFTP -> S3 ``--decompress auto`` of the ``.zst`` file,
* the stage's physical limit on this machine: ``zstd -3 -T1``, ``gzip -6`` and
  ``zstd -d`` of the local file into /dev/null (one core, as our stage),
* OpenPGP (a key pair made by ``gpg`` for the run, no passphrase): ``cp
  --decrypt --decompress`` of the ``.zst`` file encrypted by ``gpg`` (the
  chain a partner's ``.csv.zst.gpg`` takes), ``cp --encrypt-to`` of the CSV,
  and ``gpg --decrypt`` / ``gpg --encrypt`` of the local files into /dev/null
  as their limit (gpg's defaults, as the stages run it).

Prints wall time, MB/s of source bytes, peak RSS and bytes written to disk of
each, and the load average before it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import ChildResult, become_subreaper, run_measured
from run import parse_size
from s3ferry.demo import servers as testbed

BIN = Path(sys.executable).parent
BLOCK = 64 * 1024 * 1024


def csv_block(seed: int = 19) -> bytes:
    rng = random.Random(seed)
    rows = []
    size = 0
    n = 0
    while size < BLOCK:
        row = (f"{n},{rng.getrandbits(40)},{rng.choice(('paris', 'lyon', 'nantes', 'lille'))},"
               f"{rng.random() * 1000:.3f},customer-{rng.getrandbits(16)},{'yes' if rng.random() < 0.3 else 'no'}\n")
        rows.append(row)
        size += len(row)
        n += 1
    return "".join(rows).encode()[:BLOCK]


def write_csv(path: Path, size: int) -> None:
    block = csv_block()
    with open(path, "wb") as out:
        for start in range(0, size, BLOCK):
            out.write(block[: min(BLOCK, size - start)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2GiB")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default="", help="comma-separated subset of the modes (default: all)")
    args = parser.parse_args()
    become_subreaper()
    base = Path(tempfile.mkdtemp(prefix="s3ferry-transforms-bench-"))
    try:
        run_rounds(args.rounds, parse_size(args.size), base, [m for m in args.modes.split(",") if m])
    finally:
        subprocess.run(["gpgconf", "--homedir", str(base / "gpg"), "--kill", "all"], check=False, capture_output=True)
        print(f"logs: {base / 'logs'}", file=sys.stderr)
        shutil.rmtree(base / "bed", ignore_errors=True)


def run_rounds(rounds: int, size: int, base: Path, only: list[str]) -> None:
    logs = base / "logs"
    logs.mkdir()
    with testbed.servers(base / "bed") as (ssh, s3):
        env = {**os.environ, **s3.env(), "S3FERRY_STATE_DIR": str(base / "state")}
        s3.client().create_bucket(Bucket="bench")
        src = ssh.root / "bench.csv"
        write_csv(src, size)
        packed = ssh.root / "bench.csv.zst"
        subprocess.run(["zstd", "-3", "-T1", "-q", "-f", str(src), "-o", str(packed)], check=True)
        secret, public, gpg = pgp_keys(base / "gpg")
        sealed = ssh.root / "bench.csv.zst.gpg"
        subprocess.run([*gpg, "--encrypt", "--compress-algo", "none", "--recipient-file", str(public), "--output",
                        str(sealed), str(packed)], check=True, capture_output=True)
        keys = ["--identity", str(ssh.user_key), "--known-hosts", str(ssh.known_hosts)]
        cp = [str(BIN / "s3ferry"), "cp", "--overwrite", "--no-progress", "--json", *keys]
        modes: dict[str, tuple[list[str], int]] = {
            "cp": ([*cp, ssh.url(src), "s3://bench/plain.csv"], size),
            "cp --compress zstd": ([*cp, ssh.url(src), "s3://bench/", "--compress", "zstd"], size),
            "cp --compress gzip": ([*cp, ssh.url(src), "s3://bench/", "--compress", "gzip"], size),
            "cp --decompress": ([*cp, ssh.url(packed), "s3://bench/un/", "--decompress", "auto"],
                                packed.stat().st_size),
            "zstd -3 -T1": (["zstd", "-3", "-T1", "-c", str(src)], size),
            "gzip -6": (["gzip", "-6", "-c", str(src)], size),
            "zstd -d": (["zstd", "-d", "-c", str(packed)], packed.stat().st_size),
            "cp --decrypt --decompress": ([*cp, ssh.url(sealed), "s3://bench/open/", "--decrypt", "--pgp-key",
                                           str(secret), "--decompress", "auto"], sealed.stat().st_size),
            "cp --encrypt-to": ([*cp, ssh.url(src), "s3://bench/sealed/", "--encrypt-to", str(public)], size),
            "gpg --decrypt": ([*gpg, "--decrypt", str(sealed)], sealed.stat().st_size),
            "gpg --encrypt": ([*gpg, "--encrypt", "--recipient-file", str(public), "--output", "-", str(src)], size),
        }
        print(f"source {size} bytes, its zstd -3 form {packed.stat().st_size} bytes", flush=True)
        for r in range(rounds):
            for name, (argv, read) in modes.items():
                if only and name not in only:
                    continue
                subprocess.run(["sync"], check=False)
                load = os.getloadavg()[0]
                res = run_measured(argv, env, logs, f"{name.replace(' ', '_')}-{r}", stdout_path=Path("/dev/null")
                                   if not name.startswith("cp") else None)
                check(name, res)
                print(f"round {r + 1} | {name} | {res.wall_s:.2f} s | {read / res.wall_s / 1e6:.1f} MB/s "
                      f"| {res.peak_rss_bytes / 1e6:.1f} MB | {res.disk_write_bytes / 1e3:.0f} kB | load {load:.2f}"
                      f"{extra(name, res)}", flush=True)


def pgp_keys(home: Path) -> tuple[Path, Path, list[str]]:
    """A key pair without a passphrase in a GnuPG home of the run's own: its secret and public key files, and
    the gpg command line that uses that home."""
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--quiet", "--trust-model", "always"]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "bench <bench@example.com>", "future-default",
                    "default", "never"], check=True, capture_output=True)
    secret, public = home / "bench.sec", home / "bench.pub"
    secret.write_bytes(subprocess.run([*gpg, "--export-secret-keys", "bench@example.com"], check=True,
                                      capture_output=True).stdout)
    public.write_bytes(subprocess.run([*gpg, "--export", "bench@example.com"], check=True, capture_output=True).stdout)
    return secret, public, gpg


def extra(name: str, res: ChildResult) -> str:
    if not name.startswith("cp"):
        return ""
    found = json.loads(res.stdout)
    return f" | {found['destination']} {found['uploaded_bytes']} bytes, {found['parts']} parts"


def check(name: str, res: ChildResult) -> None:
    if res.returncode != 0:
        raise SystemExit(f"{name} failed ({res.returncode}): {res.stderr.strip()}")


if __name__ == "__main__":
    main()

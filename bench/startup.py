"""Start-up time of the s3ferry CLI: median wall time of commands that do (almost) no work.

Local files only, no servers. Each command runs ``--runs`` times (after one
unmeasured warm-up run, so the page cache and compiled bytecode are warm); the
median is printed in milliseconds. Bytecode is written to a private
``PYTHONPYCACHEPREFIX`` (even when ``PYTHONDONTWRITEBYTECODE`` is set), as an
installed package has it, without leaving ``__pycache__`` folders in the tree.

    .venv/bin/python bench/startup.py            # 10 runs each
    .venv/bin/python bench/startup.py --runs 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

S3FERRY = str(Path(sys.executable).parent / "s3ferry")


@dataclass(frozen=True)
class Command:
    label: str
    argv: list[str]
    output: Path | None = None  # removed before each run: every copy is a real copy, not a skip
    env: dict[str, str] = field(default_factory=dict)  # added to the environment of its runs


def commands(workdir: Path) -> list[Command]:
    """The copies go from a 1-byte local file to another local path."""
    src, dst = workdir / "a", workdir / "b"
    src.write_bytes(b"x")
    tab = {"_S3FERRY_COMPLETE": "bash_complete", "COMP_WORDS": "s3ferry cp --", "COMP_CWORD": "2"}
    return [
        Command("s3ferry --version", [S3FERRY, "--version"]),
        Command("s3ferry --help", [S3FERRY, "--help"]),
        Command("s3ferry cp --help", [S3FERRY, "cp", "--help"]),
        Command("s3ferry cp --<TAB> (bash)", [S3FERRY], env=tab),
        Command("s3ferry cp a b --no-progress", [S3FERRY, "cp", str(src), str(dst), "--no-progress"], dst),
        Command("s3ferry cp a b (stderr piped)", [S3FERRY, "cp", str(src), str(dst)], dst),
    ]


def clean_env(workdir: Path) -> dict[str, str]:
    """No user config or journal from the real HOME: every run starts from the same state."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("S3FERRY_", "AWS_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env["HOME"] = str(workdir / "home")
    env["S3FERRY_STATE_DIR"] = str(workdir / "state")
    # Without cached bytecode every run would compile s3ferry's sources again: not what users see.
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def once(cmd: Command, env: dict[str, str]) -> float:
    """Wall seconds of one run; a failed run stops the benchmark (a fast failure is no start-up time)."""
    if cmd.output is not None:
        cmd.output.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd.argv, env={**env, **cmd.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd.label} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return elapsed


def median_ms(cmd: Command, env: dict[str, str], runs: int) -> float:
    once(cmd, env)  # warm-up: not measured
    return statistics.median(once(cmd, env) for _ in range(runs)) * 1000


def imported_from(env: dict[str, str]) -> str:
    """Which s3ferry the runs import (a snapshot put first on PYTHONPATH, or the installed one)."""
    code = "import os, s3ferry; print(os.path.dirname(s3ferry.__file__))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per command (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="s3ferry-startup-") as tmp:
        workdir = Path(tmp)
        (workdir / "home").mkdir()
        env = clean_env(workdir)
        print(f"median of {args.runs} runs, {S3FERRY}, s3ferry from {imported_from(env)}")
        for cmd in commands(workdir):
            print(f"{cmd.label:32s} {median_ms(cmd, env, args.runs):7.0f} ms")


if __name__ == "__main__":
    main()

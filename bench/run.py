"""s3ferry vs rclone vs s5cmd (vs ssh cat) on the same random file, on loopback servers.

    .venv/bin/python bench/run.py                      # 2 GiB, 3 rounds, s3ferry/rclone/s5cmd
    .venv/bin/python bench/run.py --size 128MiB --rounds 1 --with-ssh-cat --markdown /tmp/bench.md
    .venv/bin/python bench/run.py --sizes 1GiB,2GiB,4GiB   # s3ferry's peak RSS per file size
    .venv/bin/python bench/run.py --tree 1000x64KiB        # many small files: s3ferry cp -r vs rclone copy
    .venv/bin/python bench/run.py --rtt 50ms,150ms --link 125MB/s --size 512MiB   # WAN: SFTP behind a delay line

See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from botocore.exceptions import ClientError

import machine
import measure
import report
import tools
import wan
from report import Run, Section
from s3ferry.demo import servers as testbed

BUCKET = "bench"
BLOCK = 8 * 1024 * 1024
PASS_THROUGH = ("--s3ferry-args", "--rclone-args")
TREE_FOLDERS = 10  # --tree spreads its files over this many subfolders
TREE_DEFAULT_TOOLS = ["s3ferry", "rclone"]
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class S3Client(Protocol):
    """The calls of a boto3 S3 client the harness uses."""

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]: ...

    def get_paginator(self, operation_name: str) -> Any: ...

    def upload_file(self, Filename: str, Bucket: str, Key: str) -> None: ...


class TreeSpec(NamedTuple):
    """``--tree 1000x64KiB``: that many files of that size."""

    files: int
    size: int
    folders: int = TREE_FOLDERS  # spread over this many subfolders (--tree-folders)


Verify = Callable[["tools.Command", "measure.ChildResult"], "dict[str, Any] | None"]


class TransferError(Exception):
    """A tool exited non-zero or left a wrong object behind."""


def parse_size(text: str) -> int:
    """``256MiB``, ``2GiB``, ``1.5G``, ``4096`` -> bytes (binary units)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a size (examples: 256MiB, 2GiB)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " kmgt".index(unit.lower() or " "))


def parse_sizes(text: str) -> list[int]:
    sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one size, e.g. 1GiB,2GiB")
    return sizes


def parse_tree(text: str) -> TreeSpec:
    """``1000x64KiB`` -> TreeSpec(1000, 65536)."""
    count, sep, size = text.partition("x")
    if not sep or not count.strip().isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as COUNTxSIZE (example: 1000x64KiB)")
    return TreeSpec(int(count), parse_size(size))


def parse_tools(text: str) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    known = dict.fromkeys(tools.ALL_TOOLS + wan.ALL_TOOLS)
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown tools {unknown}; choose from {','.join(known)}")
    return chosen


def parse_directions(text: str) -> list[str]:
    chosen = [d.strip() for d in text.split(",") if d.strip()]
    if not chosen or set(chosen) - set(wan.DIRECTIONS):
        raise argparse.ArgumentTypeError(f"directions are up (sftp -> s3) and down (s3 -> sftp), not {text!r}")
    return [d for d in wan.DIRECTIONS if d in chosen]


def glue_pass_through(argv: list[str]) -> list[str]:
    """``--s3ferry-args "--upload-streams 8"`` -> ``--s3ferry-args=--upload-streams 8``.

    argparse would otherwise take a value starting with ``--`` for an option of its own.
    """
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        out.append(f"{arg}={next(it, '')}" if arg in PASS_THROUGH else arg)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--size", type=parse_size, default=parse_size("2GiB"), help="file size (default 2GiB)")
    which.add_argument("--sizes", type=parse_sizes, help="s3ferry-only peak-RSS check at these sizes, e.g. 1GiB,2GiB")
    which.add_argument("--tree", type=parse_tree,
                       help="many files: COUNTxSIZE random files in --tree-folders folders, copied with "
                            "s3ferry cp -r / rclone copy (/ s5cmd cp from the local folder), e.g. 1000x64KiB")
    p.add_argument("--tree-folders", type=int, default=TREE_FOLDERS, metavar="N",
                   help=f"--tree spreads its files over N subfolders (default {TREE_FOLDERS})")
    p.add_argument("--rounds", type=int, help="rounds of all tools (default 3; in WAN mode 1)")
    p.add_argument("--tools", type=parse_tools,
                   help=f"comma list from {','.join(tools.ALL_TOOLS)} (default s3ferry,rclone,s5cmd; "
                        "with --tree s3ferry,rclone); WAN mode: from " + ",".join(wan.ALL_TOOLS))
    p.add_argument("--with-ssh-cat", action="store_true", help="also time `ssh ... cat FILE >/dev/null`")
    p.add_argument("--s3ferry-args", default="", help='extra s3ferry cp flags, e.g. "--upload-streams 8"')
    p.add_argument("--rclone-args", default="", help="extra rclone flags (default none: rclone's defaults); in WAN "
                                                       "mode they make the extra tool rclone-tuned")
    p.add_argument("--baseline", type=Path, metavar="SRC",
                   help="also run s3ferry from this source folder (another checkout's src/) as s3ferry-base: "
                        "before/after ratios of a change in one run")
    wan_mode = p.add_argument_group("WAN mode: the SFTP server behind a delay-line proxy (bench/wan.py)")
    wan_mode.add_argument("--rtt", type=wan.parse_rtts, metavar="RTTS",
                          help="round-trip times, e.g. 50ms or 50ms,150ms: runs every tool at each")
    wan_mode.add_argument("--link", type=wan.parse_rate, default=wan.parse_rate("125MB/s"), metavar="RATE",
                          help="the link's rate per direction (default 125MB/s, a 1 Gbit/s link; also 1Gbit/s)")
    wan_mode.add_argument("--direction", type=parse_directions, default=list(wan.DIRECTIONS), metavar="DIRS",
                          help="up (sftp -> s3), down (s3 -> sftp) or up,down (default both)")
    p.add_argument("--markdown", type=Path, help="also write the results as a Markdown section to this file")
    p.add_argument("--json", type=Path, help="also write every run's raw figures as JSON to this file")
    args = p.parse_args(glue_pass_through(argv))
    args.rounds = args.rounds if args.rounds is not None else 1 if args.rtt else 3
    if args.tree is not None:
        if args.tree_folders < 1:
            p.error("--tree-folders must be at least 1")
        args.tree = args.tree._replace(folders=args.tree_folders)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.rtt:
        return wan_args(p, args)
    if args.tools is None:
        args.tools = list(TREE_DEFAULT_TOOLS if args.tree else tools.UPLOADERS)
    if args.with_ssh_cat and "ssh-cat" not in args.tools:
        args.tools.append("ssh-cat")
    if args.baseline is not None and "s3ferry-base" not in args.tools:
        args.tools.append("s3ferry-base")
    if "s3ferry-base" in args.tools and args.baseline is None:
        p.error("s3ferry-base needs --baseline SRC")
    if args.tree and set(args.tools) - set(tools.TREE_TOOLS):
        p.error(f"--tree runs only {','.join(tools.TREE_TOOLS)}")
    unknown = sorted(set(args.tools) - set(tools.ALL_TOOLS))
    if unknown:
        p.error(f"{','.join(unknown)}: only in WAN mode (--rtt)")
    args.tools = [t for t in tools.ALL_TOOLS if t in args.tools]  # fixed order within a round
    return args


def wan_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """--rtt: the tools of WAN mode (rclone-tuned when --rclone-args is given, s3ferry-base with --baseline)."""
    if args.sizes:
        p.error("--sizes is not a WAN scenario; use --size or --tree with --rtt")
    tree = args.tree is not None
    chosen = args.tools or wan.default_tools(tree, bool(args.rclone_args), args.baseline is not None)
    if args.with_ssh_cat:
        chosen.append("ssh-cat")
    try:
        args.tools = wan.ordered(chosen, tree)
    except ValueError as exc:
        p.error(str(exc))
    if "s3ferry-base" in args.tools and args.baseline is None:
        p.error("s3ferry-base needs --baseline SRC")
    if "rclone-tuned" in args.tools and not args.rclone_args:
        p.error("rclone-tuned needs --rclone-args")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_random(path: Path, size: int) -> None:
    """``size`` random bytes, written in 8 MiB blocks and flushed to disk before any timing."""
    log(f"writing {report.human_size(size)} of random data to {path}")
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            left -= fh.write(os.urandom(min(BLOCK, left)))
        fh.flush()
        os.fsync(fh.fileno())
    # A file dropped a while ago, as a transfer usually finds it: one changed within the last two seconds
    # is read twice by s3ferry (README, "Same-size rewrites within the second"), a different figure.
    past = datetime.datetime.now().timestamp() - 3600
    os.utime(path, (past, past))


def write_tree(folder: Path, spec: TreeSpec) -> dict[str, int]:
    """``spec.files`` random files spread over subfolders of ``folder``; returns {relative path: size}."""
    log(f"writing {spec.files} files of {report.human_size(spec.size)} of random data below {folder}")
    expected: dict[str, int] = {}
    folders = min(spec.folders, spec.files)
    for n in range(spec.files):
        rel = f"d{n % folders:02d}/f{n:05d}.bin"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(spec.size))
        expected[rel] = spec.size
    os.sync()
    return expected


def listed(client: S3Client, prefix: str) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        yield from page.get("Contents", [])


def object_size(client: S3Client, key: str) -> int | None:
    try:
        return int(client.head_object(Bucket=BUCKET, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def failure(cmd: tools.Command, result: measure.ChildResult, why: str) -> TransferError:
    return TransferError(
        f"{cmd.tool} failed: {why}\ncommand: {cmd.shell()}\nexit code: {result.returncode}\n"
        f"--- stderr ---\n{result.stderr.rstrip()}\n--- stdout ---\n{result.stdout.rstrip()}"
    )


def s3ferry_json(cmd: tools.Command, result: measure.ChildResult) -> dict[str, Any]:
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    try:
        data = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise failure(cmd, result, f"no JSON result on stdout ({exc})") from exc
    if not isinstance(data, dict):
        raise failure(cmd, result, "JSON result is not an object")
    return data


def check(cmd: tools.Command, result: measure.ChildResult, client: S3Client, size: int) -> dict[str, Any] | None:
    """Raise TransferError unless the tool succeeded and the object has the file's size."""
    if result.returncode != 0:
        raise failure(cmd, result, f"exit code {result.returncode}")
    reported = s3ferry_json(cmd, result) if cmd.tool.startswith("s3ferry") else None
    if reported is not None and reported.get("size") != size:
        raise failure(cmd, result, f"reported size {reported.get('size')} != {size}")
    if cmd.key is not None:
        got = object_size(client, cmd.key)
        if got is None:
            raise failure(cmd, result, f"object s3://{BUCKET}/{cmd.key} is missing")
        if got != size:
            raise failure(cmd, result, f"object s3://{BUCKET}/{cmd.key} has {got} bytes, expected {size}")
    if cmd.dest is not None:
        got = cmd.dest.stat().st_size if cmd.dest.is_file() else None
        if got != size:
            raise failure(cmd, result, f"file {cmd.dest} on the SFTP server has {got} bytes, expected {size}")
    return reported


def check_tree(cmd: tools.Command, result: measure.ChildResult, client: S3Client,
               expected: dict[str, int]) -> dict[str, Any] | None:
    """Raise TransferError unless the tool succeeded and the prefix holds exactly the tree's files."""
    if result.returncode != 0:
        raise failure(cmd, result, f"exit code {result.returncode}")
    count, total = len(expected), sum(expected.values())
    reported = s3ferry_json(cmd, result) if cmd.tool in ("s3ferry", *wan.JOBS) else None
    if reported is not None and (reported.get("copied"), reported.get("bytes"), reported.get("failed")) != (
            count, total, 0):
        raise failure(cmd, result, f"reported {reported.get('copied')} files / {reported.get('bytes')} bytes / "
                                   f"{reported.get('failed')} failed, expected {count} / {total} / 0")
    if cmd.dest is not None:
        where, got = str(cmd.dest), local_tree(cmd.dest)
    else:
        prefix = cmd.key or ""
        where = f"s3://{BUCKET}/{prefix}"
        got = {obj["Key"].removeprefix(prefix): int(obj["Size"]) for obj in listed(client, prefix)}
    if got != expected:
        wrong = sorted(k for k in expected.keys() | got.keys() if got.get(k) != expected.get(k))
        raise failure(cmd, result, f"{where} holds {len(got)} files, {sum(got.values())} bytes; "
                                   f"expected {count}, {total} bytes; {len(wrong)} differ, e.g. {wrong[:3]}")
    return reported


def local_tree(folder: Path) -> dict[str, int]:
    """{relative path: size} of the files below ``folder`` (a tree copied onto the SFTP server)."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def run_one(cmd: tools.Command, verify: Verify, logs: Path, round_no: int, *, label: str, size: int,
            files: int = 1, log_name: str = "") -> Run:
    for path in cmd.emptied:
        path.write_text("")
    os.sync()  # no dirty pages of the previous run are written back during this one
    result = measure.run_measured(cmd.argv, cmd.env, logs, log_name or f"{cmd.tool}-{round_no}", cmd.stdout_path)
    reported = verify(cmd, result)
    run = Run(cmd.tool, round_no, size, result.wall_s, result.peak_rss_bytes, result.hwm_bytes,
              result.disk_write_bytes, reported, cmd.argv, files)
    per_file = f" {run.files_per_s:7.1f} files/s" if files > 1 else ""
    log(f"  {cmd.tool:13} {label + ':':9} {run.wall_s:7.2f} s {run.mb_per_s:8.1f} MB/s{per_file}  "
        f"peak RSS {report.mb(run.peak_rss_bytes):>6} MB  disk writes {report.human_bytes(run.disk_write_bytes)}")
    for line in result.stderr.strip().splitlines()[-3:]:
        log(f"    {cmd.tool} stderr: {line}")
    gap = abs(result.hwm_bytes - result.peak_rss_bytes)
    if result.hwm_bytes and gap > 0.1 * result.peak_rss_bytes and gap > 5e6:
        log(f"  warning: ru_maxrss {report.mb(result.peak_rss_bytes)} MB vs polled VmHWM "
            f"{report.mb(result.hwm_bytes)} MB differ by more than 10%")
    return run


def delete_objects(client: S3Client, commands: list[tools.Command]) -> None:
    for cmd in commands:
        if cmd.key is not None:
            client.delete_object(Bucket=BUCKET, Key=cmd.key)


def delete_prefixes(client: S3Client, commands: list[tools.Command]) -> None:
    for cmd in commands:
        keys = [{"Key": obj["Key"]} for obj in listed(client, cmd.key or "")]
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[start:start + 1000], "Quiet": True})


def compare(bed: tools.Bed, client: S3Client, args: argparse.Namespace, logs: Path) -> list[Run]:
    """``--rounds`` rounds, each running every chosen tool once in a fixed order."""
    runs: list[Run] = []
    write_random(bed.source, args.size)
    for n in range(1, args.rounds + 1):
        log(f"round {n}/{args.rounds}")
        commands = [tools.command(tool, bed, str(n)) for tool in args.tools]
        runs += [run_one(cmd, lambda c, r: check(c, r, client, args.size), logs, n, label=f"round {n}",
                         size=args.size) for cmd in commands]
        delete_objects(client, commands)
    return runs


def tree_compare(bed: tools.Bed, client: S3Client, args: argparse.Namespace, logs: Path) -> list[Run]:
    """``--rounds`` rounds of every chosen tool copying the whole tree, each into a prefix of its own."""
    runs: list[Run] = []
    expected = write_tree(bed.source, args.tree)
    total = sum(expected.values())
    for n in range(1, args.rounds + 1):
        log(f"round {n}/{args.rounds}")
        commands = [tools.tree_command(tool, bed, str(n)) for tool in args.tools]
        runs += [run_one(cmd, lambda c, r: check_tree(c, r, client, expected), logs, n, label=f"round {n}",
                         size=total, files=len(expected)) for cmd in commands]
        delete_prefixes(client, commands)
    return runs


def wan_compare(bed: tools.Bed, client: S3Client, args: argparse.Namespace, logs: Path) -> list[Run]:
    """WAN mode: at each RTT, rounds of every tool in each direction, the SFTP server behind a delay line."""
    tree = args.tree is not None
    expected = write_wan_source(bed, client, args)
    size, files = sum(expected.values()), len(expected)
    (bed.ssh.root / "down").mkdir(exist_ok=True)
    runs: list[Run] = []
    for rtt in args.rtt:
        spec = wan.LinkSpec(rtt, args.link)
        with wan.through_link(bed, spec, bed.ssh.base.parent) as wan_bed:
            log(f"link: {wan.rtt_label(rtt)} RTT, {args.link / 1e6:g} MB/s, delay line on port {wan_bed.sftp_port}")
            for n in range(1, args.rounds + 1):
                log(f"round {n}/{args.rounds} at {wan.rtt_label(rtt)}")
                for direction in args.direction:
                    for tool in args.tools:
                        if tool == "link":
                            runs.append(wan.measure_link(spec, size, n, direction))
                            continue
                        if not wan.runs_in(tool, direction):
                            continue
                        label = f"{n}-{rtt * 1000:g}ms"
                        cmd = wan.command(tool, wan_bed, direction, tree, label)
                        verify: Verify = ((lambda c, r: check_tree(c, r, client, expected)) if tree
                                          else (lambda c, r: check(c, r, client, size)))
                        run = run_one(cmd, verify, logs, n, label=direction, size=size, files=files,
                                      log_name=f"{tool}-{direction}-{label}")
                        runs.append(dataclasses.replace(run, direction=direction, rtt=rtt))
                        remove_copy(client, cmd, tree)
                        wan.after_run(tool, wan_bed, client)
    return runs


def write_wan_source(bed: tools.Bed, client: S3Client, args: argparse.Namespace) -> dict[str, int]:
    """The file (or tree) on the SFTP server and, for s3 -> sftp, in S3; returns {relative path: size}."""
    if args.tree:
        expected = write_tree(bed.source, args.tree)
    else:
        write_random(bed.source, args.size)
        expected = {bed.source.name: args.size}
    if "down" in args.direction:
        log("uploading the source to S3 for the s3 -> sftp runs")
        for rel in expected:
            path = bed.source / rel if args.tree else bed.source
            client.upload_file(str(path), BUCKET, wan.SOURCE_PREFIX + rel if args.tree else wan.SOURCE_KEY)
    return expected


def remove_copy(client: S3Client, cmd: tools.Command, tree: bool) -> None:
    """Delete what one run wrote: its object or prefix in S3, or its file or folder on the SFTP server."""
    if cmd.dest is not None:
        if cmd.dest.is_dir():
            shutil.rmtree(cmd.dest)
        else:
            cmd.dest.unlink(missing_ok=True)
    elif cmd.key is not None:
        (delete_prefixes if tree else delete_objects)(client, [cmd])


def sizes_check(bed: tools.Bed, client: S3Client, args: argparse.Namespace, logs: Path) -> list[Run]:
    """One s3ferry run per file size; each file is removed before the next is written."""
    runs: list[Run] = []
    for n, size in enumerate(args.sizes, start=1):
        write_random(bed.source, size)
        cmd = tools.command("s3ferry", bed, report.human_size(size))
        runs.append(run_one(cmd, functools.partial(check, client=client, size=size), logs, n,
                            label=report.human_size(size), size=size))
        delete_objects(client, [cmd])
        bed.source.unlink()
    return runs


def command_line() -> str:
    """How this run was started; a PYTHONPATH (e.g. a snapshot of s3ferry's source) is part of it."""
    env = [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []
    return shlex.join([*env, os.path.relpath(sys.executable), *sys.argv])


def markdown(args: argparse.Namespace, bed: tools.Bed, facts: list[tuple[str, str]], runs: list[Run],
             sections: list[Section]) -> str:
    now = datetime.datetime.now(datetime.UTC)
    rounds = f"{args.rounds} round{'s' if args.rounds > 1 else ''}"
    what = f"{args.tree.files} x {report.human_size(args.tree.size)} files (cp -r)" if args.tree else \
        report.human_size(args.size)
    if args.rtt:
        title = f"WAN: {what} sftp ⇄ s3 across {', '.join(map(wan.rtt_label, args.rtt))} RTT at " \
                f"{args.link / 1e6:g} MB/s, {rounds} ({now:%Y-%m-%d})"
    elif args.sizes:
        title = f"s3ferry peak RSS by file size ({now:%Y-%m-%d})"
    elif args.tree:
        title = f"Many small files (cp -r): {args.tree.files} x {report.human_size(args.tree.size)} " \
                f"over SFTP into S3, {rounds} ({now:%Y-%m-%d})"
    else:
        title = f"{report.human_size(args.size)} over SFTP into S3, {rounds} ({now:%Y-%m-%d})"
    preamble = [f"Command: `{command_line()}`", "", f"Date: {now:%Y-%m-%d %H:%M} UTC", "", "Machine:", ""]
    preamble += [f"- {name}: {value}" for name, value in facts]
    preamble += [f"- load average at the end: {load_average()}"]
    preamble += ["", "Commands of the first run of each tool ($TESTBED: the servers' temporary folder):", "", "```"]
    firsts = {(r.direction, r.tool): r for r in reversed(runs) if r.argv}
    preamble += [f"{t}{' ' + d if args.rtt else ''}: {shown(r.argv, bed)}" for (d, t), r in reversed(firsts.items())]
    preamble += ["```"]
    ran = {r.tool for r in runs}
    if args.rtt:  # WAN notes first; the loopback notes on ssh-cat do not apply
        extra, ran = wan.notes(bed, args.link, ran, bool(args.tree)), ran - {"ssh-cat"}
    else:
        extra = []
    return report.markdown_report(title, preamble, sections, extra + notes(bed, ran, args.tree))


def load_average() -> str:
    """The 1/5/15-minute load average: other work on the machine during the run shows here."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def shown(argv: list[str], bed: tools.Bed) -> str:
    """A command line for the report: short venv and temporary paths."""
    text = shlex.join(argv).replace(str(bed.ssh.base.parent), "$TESTBED")
    return text.replace(str(tools.BIN) + "/", os.path.relpath(tools.BIN) + "/")


def notes(bed: tools.Bed, ran: set[str], tree: TreeSpec | None = None) -> list[str]:
    if tree:
        return tree_notes(bed, ran, tree)
    scratch = "on /dev/shm, so they add nothing" if scratch_parent() else "on disk and add a few kB"
    out = [
        ("MB = 10^6 bytes. MB/s = file size / wall time; wall time spans the whole child process "
         "(start-up, connecting, transfer, the tool's own checks, exit)."),
        ("Peak RSS: `ru_maxrss` from `os.wait4` on the tool's process. The tool is started by a short-lived "
         "`sh` (`cmd &`) and adopted by the harness (a child subreaper), so the harness's own RSS is not "
         "inherited as a floor."),
        ("Disk writes: `write_bytes` of `/proc/<pid>/io` of the tool's process, polled every 50 ms, last value "
         "(read once more after exit, before reaping); it includes child processes the tool started and reaped. "
         f"The children's stdout/stderr and HOME are {scratch}. s3ferry's self-reported figures "
         "(measured inside the transfer only) are in the notes column."),
        ("sshd (OpenSSH, internal-sftp) and SeaweedFS run on the same machine on 127.0.0.1 and share its CPUs "
         "with the tool. The source file is fsync'ed after writing and stays in the page cache; `sync` runs "
         "before every transfer; objects are size-checked with HEAD and then deleted."),
    ]
    if "s5cmd" in ran:
        out.append("s5cmd reads the local file directly: the limit of the S3 side alone.")
    if "ssh-cat" in ran:
        out.append("ssh-cat is `ssh ... cat FILE > /dev/null`: the limit of the SSH side alone (no S3).")
    if "rclone" in ran:
        out.append(
            f"rclone is configured only through environment variables (S3 provider `{bed.rclone_provider}`, "
            "HOME empty, RCLONE_CONFIG an empty file, emptied again before every run because rclone saves the "
            "SFTP shell and hash commands it detects there). At its defaults rclone runs `md5sum FILE` on the "
            "SFTP server before uploading and copies with 4 streams of 5 MiB chunks."
        )
    return out


def tree_notes(bed: tools.Bed, ran: set[str], tree: TreeSpec) -> list[str]:
    out = [
        (f"The tree: {tree.files} random files of {report.human_size(tree.size)} in "
         f"{min(tree.folders, tree.files)} folders (`d00/f00000.bin` ...), written and synced once before the "
         "first round; they stay in the page cache. MB/s = all files' bytes / wall time; files/s = files / wall "
         "time; wall time spans the whole child process (start-up, listing, connecting, transfers, exit)."),
        ("Every run copies into a new prefix (`<tool>-<round>/`), so nothing is skipped as already there. After "
         "each run the prefix is listed: its keys and sizes must equal the tree's (count, names, total bytes), "
         "s3ferry's `--json` must report every file copied and none failed; then the objects are deleted."),
        ("Peak RSS (`ru_maxrss` via a child subreaper) and disk writes (`/proc/<pid>/io` `write_bytes`) are "
         "measured as for the single-file runs; s3ferry's resume journal is on real disk."),
        ("sshd (OpenSSH, internal-sftp) and SeaweedFS run on the same machine on 127.0.0.1 and share its 2 CPUs "
         "with the tool; `sync` runs before every transfer."),
    ]
    if "s5cmd" in ran:
        out.append("s5cmd copies the same files from the local folder (`s5cmd cp 'DIR/*' s3://...`): the S3 side "
                   "alone.")
    if "rclone" in ran:
        out.append(f"rclone: `rclone copy` at its defaults (4 transfers, 8 checkers), configured only through "
                   f"environment variables (S3 provider `{bed.rclone_provider}`, empty RCLONE_CONFIG emptied "
                   "before every run).")
    return out


def sections_for(args: argparse.Namespace, runs: list[Run]) -> list[Section]:
    if args.rtt:
        return wan.sections(runs, args.link)
    return report.sizes_sections(runs) if args.sizes else report.compare_sections(runs)


def execute(args: argparse.Namespace, home: Path) -> list[Run]:
    """Start the servers, run the benchmark, return the runs."""
    logs = home.parent / "logs"
    logs.mkdir()
    (home.parent / "rclone.conf").touch()  # rclone's config: empty, outside the empty HOME
    with testbed.servers(None) as (ssh, s3):
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        uses_rclone = any(t.startswith("rclone") for t in args.tools)
        provider = tools.rclone_provider() if uses_rclone and not args.sizes else "-"
        source = ssh.root / ("tree" if args.tree else "bench.bin")
        bed = tools.Bed(ssh, s3, BUCKET, source, home, shlex.split(args.s3ferry_args),
                        shlex.split(args.rclone_args), provider, args.baseline)
        log(f"servers up: sftp 127.0.0.1:{ssh.port} ({'OpenSSH' if ssh.proc else 'asyncssh fallback'}), "
            f"S3 {s3.endpoint}; rclone S3 provider: {provider}")
        facts = machine.facts(testbed.weed_binary()) if args.markdown else []
        scenario = wan_compare if args.rtt else sizes_check if args.sizes else tree_compare if args.tree else compare
        runs = scenario(bed, client, args, logs)
        text = markdown(args, bed, facts, runs, sections_for(args, runs)) if args.markdown else ""
    if args.markdown:
        args.markdown.write_text(text)
        log(f"wrote {args.markdown}")
    return runs


def scratch_parent() -> str | None:
    """/dev/shm when usable: the children's logs and HOME then cause no disk writes of their own."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    measure.become_subreaper()
    with tempfile.TemporaryDirectory(prefix="s3ferry-bench-", dir=scratch_parent()) as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        try:
            runs = execute(args, home)
        except TransferError as exc:
            log(f"\nFAILED: {exc}")
            return 1
    print(report.text_report(sections_for(args, runs)))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in runs], indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

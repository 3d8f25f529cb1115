"""WAN mode of bench/run.py (``--rtt 50ms --link 125MB/s``): the SFTP server behind a delay line.

The delay line (``tests/servers/delay_line.py``) forwards every byte RTT/2
later in each direction at most at the link's rate; every tool connects to it
instead of sshd. Here: parsing of ``--rtt``/``--link``, the link in front of
the test bed, the commands of both directions (sftp -> s3 "up", s3 -> sftp
"down") for each tool variant, and the report's tables.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import report
import tools
from report import Run, Section, Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the delay line lives with the tests
from servers.delay_line import DelayLine, known_hosts_via, link_rate
from servers.delay_line import LinkSpec as LinkSpec  # re-exported: run.py builds the links

MiB = 1024 * 1024
DIRECTIONS = ("up", "down")
ARROW = {"up": "sftp → s3", "down": "s3 → sftp"}
SOURCE_KEY = "wan-source.bin"  # the big file in S3, source of the s3 -> sftp runs
SOURCE_PREFIX = "wan-tree/"  # the tree in S3, source of the s3 -> sftp runs
NOHASH = ["--sftp-disable-hashcheck"]
#: What WAN mode runs, in this order within a round. "link" is a raw TCP bulk copy through a delay line
#: of the same settings (measured in the harness, no child); "ssh-cat" the SSH side alone.
FILE_TOOLS = ("s3ferry", "s3ferry-base", "rclone", "rclone-tuned", "ssh-cat", "link")
TREE_TOOLS = ("s3ferry", "s3ferry-pull", "s3ferry-push", "s3ferry-base", "rclone", "rclone-nohash", "rclone-tuned")
#: the jobs of a tree, each in its one direction: pull sftp -> s3 (the source's files archived into
#: .done/, put back after the run), push s3 -> sftp (its delivery tags removed after the run)
JOBS = {"s3ferry-pull": "up", "s3ferry-push": "down"}
ALL_TOOLS = tuple(dict.fromkeys(FILE_TOOLS + TREE_TOOLS))
_RTT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$", re.IGNORECASE)
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?)(b|bit)/s\s*$", re.IGNORECASE)


def parse_rtts(text: str) -> list[float]:
    """``50ms,150ms`` -> [0.05, 0.15] (seconds; ``ms`` or ``s`` required)."""
    rtts = []
    for part in filter(str.strip, text.split(",")):
        match = _RTT_RE.match(part)
        if not match:
            raise argparse.ArgumentTypeError(f"cannot read {part!r} as a round-trip time (examples: 50ms, 0.15s)")
        rtts.append(float(match[1]) / (1000 if match[2].lower() == "ms" else 1))
    if not rtts:
        raise argparse.ArgumentTypeError("give at least one round-trip time, e.g. 50ms,150ms")
    return rtts


def parse_rate(text: str) -> float:
    """``125MB/s`` -> 125e6 bytes/s; also ``1Gbit/s``, ``100MiB/s``."""
    match = _RATE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a rate (examples: 125MB/s, 1Gbit/s, 100MiB/s)")
    number, prefix, binary, unit = match.groups()
    scale = (1024 if binary else 1000) ** " kmg".index(prefix.lower() or " ")
    rate: float = float(number) * scale / (8 if unit.lower() == "bit" else 1)
    return rate


def rtt_label(rtt: float) -> str:
    return f"{rtt * 1000:g} ms"


def default_tools(tree: bool, tuned: bool, baseline: bool) -> list[str]:
    """s3ferry, rclone at its defaults (and without its md5sum for trees), the link limits for a file."""
    chosen = ["s3ferry", "rclone", *(["rclone-nohash", *JOBS] if tree else ["ssh-cat", "link"])]
    chosen += (["rclone-tuned"] if tuned else []) + (["s3ferry-base"] if baseline else [])
    return ordered(chosen, tree)


def ordered(chosen: list[str], tree: bool) -> list[str]:
    """The tools of a round in a fixed order; raises ValueError for one the scenario has not."""
    allowed = TREE_TOOLS if tree else FILE_TOOLS
    wrong = sorted(set(chosen) - set(allowed))
    if wrong:
        raise ValueError(f"WAN mode {'--tree ' if tree else ''}runs only {','.join(allowed)}, not {','.join(wrong)}")
    return [t for t in allowed if t in chosen]


@contextmanager
def through_link(bed: tools.Bed, spec: LinkSpec, folder: Path) -> Iterator[tools.Bed]:
    """The test bed with its SFTP server behind a delay line of ``spec``: the tools connect to the line."""
    with DelayLine(bed.ssh.port, spec.rtt, spec.rate, slack=spec.slack) as line:
        known_hosts = known_hosts_via(bed.ssh.known_hosts, line.port, folder / f"known_hosts_{line.port}")
        yield replace(bed, via_port=line.port, via_known_hosts=known_hosts)


def measure_link(spec: LinkSpec, size: int, round_no: int, direction: str) -> Run:
    """The link itself: a raw TCP bulk copy of ``size`` bytes through a delay line of ``spec``."""
    start = time.monotonic()
    rate = link_rate(spec, size)
    report_line = f"{rate / MiB:.1f} MiB/s in {time.monotonic() - start:.1f} s"
    print(f"  link          {direction:4} raw TCP through a delay line of the same settings: {report_line}",
          file=sys.stderr, flush=True)
    return Run("link", round_no, size, size / rate, 0, 0, 0, direction=direction, rtt=spec.rtt)


def variant(tool: str, bed: tools.Bed) -> tuple[str, tools.Bed]:
    """The base tool a WAN variant runs, and the bed (its extra arguments) it runs with."""
    if tool == "rclone-nohash":
        return "rclone", replace(bed, rclone_args=NOHASH)
    if tool == "rclone-tuned":
        return "rclone", bed
    if tool == "rclone":
        return "rclone", replace(bed, rclone_args=[])  # --rclone-args belongs to rclone-tuned in WAN mode
    if tool == "s3ferry":
        return "s3ferry", replace(bed, baseline=None)
    return tool, bed


def runs_in(tool: str, direction: str) -> bool:
    """Whether ``tool`` copies in ``direction`` (a job goes one way only)."""
    return JOBS.get(tool, direction) == direction


def command(tool: str, bed: tools.Bed, direction: str, tree: bool, label: str) -> tools.Command:
    """``tool`` copying the file (or the tree) in ``direction``, into a new object/prefix/path of ``label``."""
    base, run_bed = variant(tool, bed)
    if tool == "s3ferry-pull":
        prefix = f"{tool}-{label}/"
        argv, env = tools.s3ferry_cp(run_bed, bed.sftp_url(bed.source), f"s3://{bed.bucket}/{prefix}", verb="pull")
        return tools.Command(tool, argv, env, prefix)
    if tool == "s3ferry-push":
        dest = bed.ssh.root / "down" / f"{tool}-{label}"
        argv, env = tools.s3ferry_cp(run_bed, f"s3://{bed.bucket}/{SOURCE_PREFIX}", bed.sftp_url(dest), verb="push")
        return tools.Command(tool, argv, env, None, dest=dest)
    if direction == "up":
        builders = tools.TREE_BUILDERS if tree else tools.BUILDERS
        suffix = "/" if tree else ""
        return replace(builders[base](run_bed, f"{tool}-{label}{suffix}"), tool=tool)
    dest = bed.ssh.root / "down" / f"{tool}-{label}{'' if tree else '.bin'}"
    if base == "ssh-cat":
        return replace(tools.ssh_cat_to_server(run_bed, ""), tool=tool)
    if base == "rclone":
        verb, source = ("copy", f"dst:{bed.bucket}/{SOURCE_PREFIX.rstrip('/')}") if tree else \
            ("copyto", f"dst:{bed.bucket}/{SOURCE_KEY}")
        argv = [tools.tool_path("rclone"), verb, source, f"src:{dest}", *run_bed.rclone_args]
        return tools.Command(tool, argv, tools.rclone_env(run_bed), None, emptied=(tools.rclone_config(bed),),
                             dest=dest)
    source = f"s3://{bed.bucket}/{SOURCE_PREFIX if tree else SOURCE_KEY}"
    argv, env = tools.s3ferry_cp(run_bed, source, bed.sftp_url(dest), *(["-r", "--no-progress"] if tree else []))
    return tools.Command(tool, argv, env, None, dest=dest)


def after_run(tool: str, bed: tools.Bed, client: Any) -> None:  # a boto3 S3 client
    """Undo what a job's run changed besides its copy: the next run must find the same tree."""
    if tool == "s3ferry-pull":
        for done in sorted(bed.source.rglob(".done"), reverse=True):
            for path in done.iterdir():
                path.rename(done.parent / path.name)
            done.rmdir()
    elif tool == "s3ferry-push":
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bed.bucket, Prefix=SOURCE_PREFIX):
            for obj in page.get("Contents", []):
                client.delete_object_tagging(Bucket=bed.bucket, Key=obj["Key"])


def _medians(runs: list[Run]) -> dict[tuple[float | None, str, str], list[Run]]:
    out: dict[tuple[float | None, str, str], list[Run]] = {}
    for r in runs:
        out.setdefault((r.rtt, r.direction, r.tool), []).append(r)
    return out


def _median_wall(runs: list[Run]) -> float:
    return statistics.median(r.wall_s for r in runs)


def summary_table(runs: list[Run], rtt: float | None, link: float) -> Table:
    """Per direction and tool: median wall time, MiB/s, % of the link, files/s, peak RSS, ratio to rclone."""
    groups = _medians(runs)
    tree = report.is_tree(runs)
    # Wall-time ratios to rclone at its defaults, and for trees to rclone without its md5sum per file too.
    baselines = [t for t in ("rclone", "rclone-nohash") if any(r.tool == t for r in runs)]
    headers = ["direction", "tool", "runs", "wall s", "MiB/s", "% of link", "peak RSS MB",
               *(f"wall / {t}" for t in baselines)]
    if tree:
        headers.insert(5, "files/s")
    rows = []
    for direction in DIRECTIONS:
        measured_link = groups.get((rtt, direction, "link"))
        reference = runs[0].size / _median_wall(measured_link) if measured_link else link
        for tool in ALL_TOOLS:
            rs = groups.get((rtt, direction, tool))
            if not rs:
                continue
            wall = _median_wall(rs)
            rate = rs[0].size / wall
            rss = max(r.peak_rss_bytes for r in rs)
            others = [groups.get((rtt, direction, t)) for t in baselines]
            row = [ARROW[direction], tool, str(len(rs)), f"{wall:.2f}", f"{rate / MiB:.1f}",
                   f"{rate / reference * 100:.0f}%", report.mb(rss) if rss else "-",
                   *(f"{wall / _median_wall(other):.2f}" if other else "-" for other in others)]
            if tree:
                row.insert(5, f"{rs[0].files / wall:.1f}")
            rows.append(row)
    return headers, rows


def every_run_table(runs: list[Run]) -> Table:
    headers = ["RTT", "direction", "tool", "round", "wall s", "MiB/s", "peak RSS MB", "disk writes", "notes"]
    rows = [[rtt_label(r.rtt or 0), ARROW[r.direction], r.tool, str(r.round), f"{r.wall_s:.2f}",
             f"{r.size / r.wall_s / MiB:.1f}", report.mb(r.peak_rss_bytes) if r.peak_rss_bytes else "-",
             report.human_bytes(r.disk_write_bytes), report.notes_of(r)] for r in runs]
    return headers, rows


def sections(runs: list[Run], link: float) -> list[Section]:
    """One summary per RTT, then every run."""
    out = []
    for rtt in dict.fromkeys(r.rtt for r in runs):
        of_rtt = [r for r in runs if r.rtt == rtt]
        has_link = any(r.tool == "link" for r in of_rtt)
        basis = ("the raw TCP copy through the same delay line (tool `link`)" if has_link
                 else f"the nominal link rate, {link / MiB:.1f} MiB/s")
        out.append(Section(f"{rtt_label(rtt or 0)} RTT, {link / 1e6:g} MB/s link (medians)",
                           summary_table(of_rtt, rtt, link),
                           f"% of link: of {basis}. wall / rclone: below 1, faster than rclone at its defaults "
                           "(rclone-nohash: with --sftp-disable-hashcheck)."))
    out.append(Section("Every run", every_run_table(runs)))
    return out


def notes(bed: tools.Bed, link: float, ran: set[str], tree: bool) -> list[str]:
    out = [
        ("The link: a delay-line TCP proxy (`tests/servers/delay_line.py`, asyncio, in the harness's process) in "
         "front of sshd. Each direction of each connection delivers every byte RTT/2 after it arrived, after "
         f"serialising it at {link / 1e6:g} MB/s; its queue holds at most rate x RTT + 1 MiB, then TCP flow "
         "control stops the sender. A new connection reaches sshd one RTT after the client's connect (the "
         "handshake). S3 (SeaweedFS) stays on loopback, as for a tool running next to its S3 region."),
        ("MiB/s = bytes / wall time / 2^20; wall time spans the whole child process (start-up, connecting, "
         "transfer, exit). Peak RSS: `ru_maxrss` of the tool's process (see the loopback notes)."),
        (f"up = sftp → s3 (the file or tree read from the SFTP server); down = s3 → sftp, from the object "
         f"`{SOURCE_KEY}` (or prefix `{SOURCE_PREFIX}`) uploaded once before the first run, into a new path below "
         "`down/` on the SFTP server, size-checked (a tree: names and sizes) and deleted after each run."),
    ]
    if "link" in ran:
        out.append("link: a raw TCP bulk copy of the same size through a delay line of the same settings "
                   "(connect to the receiver's last-byte acknowledgement, minus those two round trips): what the "
                   "link carries.")
    if "ssh-cat" in ran:
        out.append("ssh-cat: `ssh … cat FILE > /dev/null` (sftp → s3: the server sends) and `ssh … 'cat >/dev/null' "
                   "< FILE` (s3 → sftp: the server receives) through the delay line: the SSH side alone, no S3.")
    if "rclone-nohash" in ran:
        out.append("rclone-nohash: rclone with `--sftp-disable-hashcheck` (no md5sum per file on the server).")
    if "rclone-tuned" in ran:
        out.append(f"rclone-tuned: rclone with `{' '.join(bed.rclone_args)}`.")
    return out

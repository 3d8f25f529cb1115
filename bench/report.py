"""Tables of the benchmark runs: plain text for the terminal, Markdown for docs/benchmarks.md.

Units: MB = 10^6 bytes, MB/s = file size (all files' sizes, for a tree) / wall
time / 10^6. Ratios of wall times below 1 mean the first tool of the pair was
faster. Runs of a tree (``files`` > 1) also get a files/s column.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

Table = tuple[list[str], list[list[str]]]
PAIRS = (("s3ferry", "rclone"), ("s3ferry", "s5cmd"), ("rclone", "s5cmd"), ("s3ferry", "ssh-cat"),
         ("s3ferry", "s3ferry-base"))


@dataclass
class Run:
    """One measured transfer."""

    tool: str
    round: int
    size: int
    wall_s: float
    peak_rss_bytes: int
    hwm_bytes: int
    disk_write_bytes: int
    reported: dict[str, Any] | None = None  # s3ferry's own --json output
    argv: list[str] = field(default_factory=list)
    files: int = 1  # files copied (a --tree run: all of the tree's)
    direction: str = "up"  # up: sftp -> s3; down: s3 -> sftp (WAN mode)
    rtt: float | None = None  # WAN mode: the delay line's round-trip time in seconds; None: loopback

    @property
    def mb_per_s(self) -> float:
        return self.size / self.wall_s / 1e6

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s


@dataclass
class Section:
    heading: str
    table: Table
    after: str = ""  # a line printed under the table


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_size(n: int) -> str:
    """A binary size as the user typed it: 128MiB, 2GiB, 1.5GiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g}{unit}"
    return f"{n}B"


def notes_of(run: Run) -> str:
    rep = run.reported
    if not rep:
        return ""
    if "kind" in rep:  # pull, push: a job's report has no RSS or disk figures of its own
        return f"self-reported: {rep['seconds']:.2f} s, {rep['copied']} files copied"
    if "copied" in rep:  # cp -r
        return (f"self-reported: {rep['seconds']:.2f} s, RSS {mb(rep['peak_rss_bytes'])} MB, "
                f"disk {human_bytes(rep['disk_write_bytes'])}, {rep['copied']} files copied")
    return (f"self-reported: {rep['seconds']:.2f} s, RSS {mb(rep['peak_rss_bytes'])} MB, "
            f"disk {human_bytes(rep['disk_write_bytes'])}, {rep['parts']} parts x {human_size(rep['part_size'])}")


def is_tree(runs: list[Run]) -> bool:
    return any(r.files > 1 for r in runs)


def runs_table(runs: list[Run]) -> Table:
    headers = ["tool", "round", "wall s", "MB/s", "peak RSS MB", "disk writes", "notes"]
    rows = [[r.tool, str(r.round), f"{r.wall_s:.2f}", f"{r.mb_per_s:.1f}", mb(r.peak_rss_bytes),
             human_bytes(r.disk_write_bytes), notes_of(r)] for r in runs]
    if is_tree(runs):
        headers.insert(4, "files/s")
        for row, r in zip(rows, runs, strict=True):
            row.insert(4, f"{r.files_per_s:.1f}")
    return headers, rows


def by_tool(runs: list[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for r in runs:
        out.setdefault(r.tool, []).append(r)
    return out


def medians_table(runs: list[Run]) -> Table:
    headers = ["tool", "runs", "median wall s", "min-max wall s", "median MB/s",
               "median peak RSS MB", "max peak RSS MB", "max disk writes"]
    rows = []
    for tool, rs in by_tool(runs).items():
        walls = [r.wall_s for r in rs]
        rss = [r.peak_rss_bytes for r in rs]
        rows.append([tool, str(len(rs)), f"{statistics.median(walls):.2f}", f"{min(walls):.2f}-{max(walls):.2f}",
                     f"{statistics.median(r.mb_per_s for r in rs):.1f}", mb(statistics.median(rss)), mb(max(rss)),
                     human_bytes(max(r.disk_write_bytes for r in rs))])
        if is_tree(runs):
            rows[-1].insert(5, f"{statistics.median(r.files_per_s for r in rs):.1f}")
    if is_tree(runs):
        headers.insert(5, "median files/s")
    return headers, rows


def wall_ratios(runs: list[Run], a: str, b: str) -> tuple[list[float], float]:
    """Per-round wall(a)/wall(b) for rounds that have both, and median(a)/median(b)."""
    walls: dict[str, dict[int, float]] = {}
    for r in runs:
        walls.setdefault(r.tool, {})[r.round] = r.wall_s
    per_round = [walls[a][n] / walls[b][n] for n in sorted(walls[a]) if n in walls[b]]
    of_medians = statistics.median(walls[a].values()) / statistics.median(walls[b].values())
    return per_round, of_medians


def ratios_table(runs: list[Run]) -> Table:
    headers = ["wall-time ratio", "median of per-round ratios", "ratio of medians", "per round"]
    tools = {r.tool for r in runs}
    rows = []
    for a, b in PAIRS:
        if a in tools and b in tools:
            per_round, of_medians = wall_ratios(runs, a, b)
            rows.append([f"{a} / {b}", f"{statistics.median(per_round):.3f}", f"{of_medians:.3f}",
                         " ".join(f"{x:.3f}" for x in per_round)])
    return headers, rows


def sizes_sections(runs: list[Run]) -> list[Section]:
    """Peak RSS of s3ferry per file size, relative to the run on the smallest file."""
    base = min(runs, key=lambda r: r.size)
    headers = ["file size", "wall s", "MB/s", "peak RSS MB", "RSS vs smallest", "disk writes", "notes"]
    rows = [[human_size(r.size), f"{r.wall_s:.2f}", f"{r.mb_per_s:.1f}", mb(r.peak_rss_bytes),
             f"{(r.peak_rss_bytes / base.peak_rss_bytes - 1) * 100:+.1f}%", human_bytes(r.disk_write_bytes),
             notes_of(r)] for r in runs]
    rss = [r.peak_rss_bytes for r in runs]
    spread = (max(rss) - min(rss)) / base.peak_rss_bytes * 100
    after = (f"Peak RSS spread: (max - min) / RSS at {human_size(base.size)} = {spread:.1f}% "
             f"({mb(min(rss))}-{mb(max(rss))} MB over {human_size(min(r.size for r in runs))}-"
             f"{human_size(max(r.size for r in runs))}).")
    return [Section("s3ferry peak RSS by file size", (headers, rows), after)]


def compare_sections(runs: list[Run]) -> list[Section]:
    sections = [Section("Every run", runs_table(runs)), Section("Per tool", medians_table(runs))]
    ratios = ratios_table(runs)
    if ratios[1]:
        sections.append(Section("Wall-time ratios (below 1: the first tool is faster)", ratios))
    return sections


def render_text(table: Table) -> str:
    headers, rows = table
    widths = [max(len(c) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [headers, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_md(table: Table) -> str:
    headers, rows = table
    lines = ["| " + " | ".join(line) + " |" for line in [headers, *rows]]
    lines.insert(1, "|" + "|".join("---" for _ in headers) + "|")
    return "\n".join(lines)


def text_report(sections: list[Section]) -> str:
    parts = []
    for s in sections:
        parts.append(f"\n== {s.heading} ==\n{render_text(s.table)}" + (f"\n{s.after}" if s.after else ""))
    return "\n".join(parts)


def markdown_report(title: str, preamble: list[str], sections: list[Section], notes: list[str]) -> str:
    out = [f"## {title}", "", *preamble, ""]
    for s in sections:
        out += [f"### {s.heading}", "", render_md(s.table), ""] + ([s.after, ""] if s.after else [])
    out += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)

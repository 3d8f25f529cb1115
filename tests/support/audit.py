"""Tampering with an audit log the three ways its chain must catch, and reading it back, for the audit tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def records(log: Path) -> list[dict[str, Any]]:
    """Every entry of ``log`` as its JSON object."""
    return [json.loads(line) for line in lines(log)]


def _write(log: Path, rows: list[str]) -> None:
    log.write_text("".join(row + "\n" for row in rows))


def edit(log: Path, number: int, **changes: Any) -> None:
    """Change fields of the entry on line ``number`` (1-based), leaving its hash as it was."""
    rows = lines(log)
    fields = json.loads(rows[number - 1])
    fields.update(changes)
    rows[number - 1] = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    _write(log, rows)


def remove(log: Path, number: int) -> None:
    """Drop the entry on line ``number``."""
    rows = lines(log)
    del rows[number - 1]
    _write(log, rows)


def swap(log: Path, number: int) -> None:
    """Exchange the entries on lines ``number`` and ``number + 1``."""
    rows = lines(log)
    rows[number - 1], rows[number] = rows[number], rows[number - 1]
    _write(log, rows)

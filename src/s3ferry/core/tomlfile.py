"""TOML text with the line of every problem: one loader for the config file and the flows file.

tomllib gives no positions for keys, so the lines of table headers and
``key =`` are found in the raw text: the first line of that key inside the
table's span. No I/O here: callers read the file and say what is wrong.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any


class TomlSyntax(Exception):
    """Text that is not TOML: the line (and column) tomllib names, and its message without them."""

    def __init__(self, line: int, column: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def parse(text: str) -> dict[str, Any]:
    """The document; raises :class:`TomlSyntax`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _POSITION.search(str(exc))
        line, column = (int(match.group(1)), int(match.group(2))) if match else (1, None)
        raise TomlSyntax(line, column, _POSITION.sub("", str(exc))) from exc


_KEY_TOKEN = r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+'
_HEADER_RE = re.compile(r"^\s*\[(?!\[)\s*(.+?)\s*\]\s*(?:#.*)?$")
_KEY_LINE_RE = re.compile(rf"^\s*({_KEY_TOKEN})\s*[=.]")


def _decode_key(token: str) -> str:
    if token[:1] in "\"'":
        try:
            return str(next(iter(tomllib.loads(f"{token} = 0"))))
        except (tomllib.TOMLDecodeError, StopIteration):
            return token.strip("\"'")
    return token


def _dotted(text: str) -> tuple[str, ...] | None:
    """``flows."partner drop"`` -> ("flows", "partner drop"), via tomllib itself."""
    try:
        doc: Any = tomllib.loads(f"{text} = 0")
    except tomllib.TOMLDecodeError:
        return None
    path: list[str] = []
    while isinstance(doc, dict) and len(doc) == 1:
        key = next(iter(doc))
        path.append(key)
        doc = doc[key]
    return tuple(path)


class LineIndex:
    """Lines of table headers and keys in the raw text."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.spans: dict[tuple[str, ...], tuple[int, int]] = {}  # table -> [first line, end) (1-based)
        headers: list[tuple[int, tuple[str, ...]]] = [(1, ())]
        for number, line in enumerate(self.lines, 1):
            match = _HEADER_RE.match(line)
            if match:
                path = _dotted(match.group(1))
                if path is not None:
                    headers.append((number, path))
        for i, (start, path) in enumerate(headers):
            end = headers[i + 1][0] if i + 1 < len(headers) else len(self.lines) + 1
            self.spans.setdefault(path, (start, end))

    def table(self, path: tuple[str, ...]) -> int:
        """The line of a table's header; for a table without one, the line of its key in the parent."""
        if path in self.spans:
            return self.spans[path][0]
        if not path:
            return 1
        below = [start for known, (start, _) in self.spans.items() if known[:len(path)] == path]
        if below:  # only sub-tables have headers: [endpoints.partner] for "endpoints"
            return min(below)
        return self.key(path[:-1], path[-1])

    def key(self, table: tuple[str, ...], key: str) -> int:
        """The first line of ``key = ...`` inside ``table``'s span (else the table's own line)."""
        if table in self.spans:
            start, end = self.spans[table]
            for number in range(start + (1 if table else 0), end):
                match = _KEY_LINE_RE.match(self.lines[number - 1])
                if match and _decode_key(match.group(1)) == key:
                    return number
        return self.table(table)

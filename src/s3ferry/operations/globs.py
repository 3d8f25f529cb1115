"""Globs in ``cp``'s source: the shell's rules, applied to one folder.

Only the last path component of a ``cp`` SOURCE can be a pattern (never a
destination, never an http(s) URL, never with ``-r``, whose selection is
``--include`` / ``--exclude``). ``*``, ``?`` and ``[...]`` are wildcards as in
:mod:`fnmatch`; inside brackets a character is literal (``[*]``, ``[?]``,
``[[]``: :func:`glob.escape`'s way), so ``q[?]mark.bin`` names exactly the
file ``q?mark.bin``. As in the shell, a name starting with ``.`` is matched
only by a pattern starting with ``.`` (this also keeps s3ferry's own
``.NAME.s3ferry-XXXX.tmp`` files out of ``*``).

As bash does without ``failglob``: a pattern that matches no file of its
folder is taken as a literal name, and only when no file has that name
either is it an error (exit 2, ``no such file``). Listing reads that one
folder (:meth:`Source.list_folder`), never the tree below it.

Where the matches go is :func:`s3ferry.operations.copy.acopy_glob`'s business, as ``cp``
does with arguments the shell expanded: into DST when it is a folder; to DST
itself when exactly one file matches; more than one into a file is an error.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from s3ferry.core.storage import Entry
from s3ferry.core.urls import LITERAL_SCHEMES, Location

_WILDCARDS = "*?["


@dataclass(frozen=True)
class Glob:
    """A ``cp`` source whose last component is a pattern: the folder to list and the pattern."""

    folder: Location  # path "" (the current local folder, an S3 bucket's top) or ending in "/"
    pattern: str


def has_wildcards(name: str) -> bool:
    """Whether the shell would try ``name`` as a pattern (it holds ``*``, ``?`` or ``[``)."""
    return any(c in name for c in _WILDCARDS)


def glob_of(location: Location) -> Glob | None:
    """The folder and pattern when ``location``'s last component is a pattern, else None.

    http(s) URLs are never globs (their ``?`` starts a query), nor is a folder (a path ending in ``/``).
    """
    if location.scheme not in LITERAL_SCHEMES or location.is_dir_like:
        return None
    name = location.name
    if not has_wildcards(name):
        return None
    return Glob(location.with_path(location.path[: len(location.path) - len(name)]), name)


def matches(name: str, pattern: str) -> bool:
    """The shell's verdict on one file name (``fnmatch`` rules, leading ``.`` matched explicitly)."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def expand(entries: Sequence[Entry], pattern: str) -> list[Entry]:
    """The files of one folder that ``pattern`` names, as bash would expand it (without failglob).

    The matching files, sorted; if none match, the file literally named ``pattern`` (``br[1].bin``
    when there is no ``br1.bin``); if there is none either, an empty list.
    """
    found = sorted((e for e in entries if matches(e.path, pattern)), key=lambda e: e.path)
    return found or [e for e in entries if e.path == pattern]

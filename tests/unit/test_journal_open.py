"""Processes and flows opening one new journal at the same moment (two flows of one `s3ferry run`, a
`status` beside a running job) must all get it: SQLite's switch to WAL on a new file can answer "database
is locked" at once, without waiting its busy timeout (seen once in `make test`, as a flow failed). A local
SQLite file; no servers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from s3ferry.core.errors import UserError
from s3ferry.engine.journal import Journal

OPENERS = 8
#: without the set-up lock about one round in twenty met the lock: 300 rounds miss it with odds ~1e-7
ROUNDS = 300


def _open_together(state_dir: Path) -> list[BaseException]:
    start, failures = threading.Barrier(OPENERS), []

    def opener() -> None:
        journal = Journal(state_dir)
        start.wait()
        # what `check()` runs in its thread, called straight: an event loop's start-up between the barrier
        # and the open spreads the openers apart, and they seldom meet (1 round in 100 instead of 1 in 20)
        try:
            journal._connect().close()
        except (UserError, sqlite3.Error) as exc:
            failures.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_a_new_journal_opened_by_many_at_once_opens_for_all(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        failures = _open_together(tmp_path / str(round_))
        assert not failures, f"round {round_}: {failures[0]}"

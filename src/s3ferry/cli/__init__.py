"""The command line: ``s3ferry`` and its subcommands, the settings file, progress display.

Importing this package registers every subcommand on :func:`main`.
"""

from s3ferry.cli import doctor, run, status, verify  # registers `doctor`, `run`, `status`, `history`, `verify`
from s3ferry.cli.app import main

__all__ = ["doctor", "main", "run", "status", "verify"]

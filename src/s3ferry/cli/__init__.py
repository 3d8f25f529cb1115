"""The command line: ``s3ferry`` and its subcommands, the settings file, progress display.

Importing this package registers every subcommand on :func:`main`.
"""

# registers `audit`, `doctor`, `run`, `status`, `history`, `verify`
from s3ferry.cli import audit, doctor, run, status, verify
from s3ferry.cli.app import main

__all__ = ["audit", "doctor", "main", "run", "status", "verify"]

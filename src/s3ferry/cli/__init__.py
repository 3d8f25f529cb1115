"""The command line: ``s3ferry`` and its subcommands, the settings file, progress display.

Importing this package registers every subcommand on :func:`main`.
"""

# registers `audit`, `doctor`, `run`, `serve`, `status`, `history`, `verify`
from s3ferry.cli import audit, doctor, run, serve, status, verify
from s3ferry.cli.app import main

__all__ = ["audit", "doctor", "main", "run", "serve", "status", "verify"]

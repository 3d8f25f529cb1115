"""The command line: ``s3ferry`` and its subcommands, the settings file, progress display.

Importing this package registers every subcommand on :func:`main`.
"""

from s3ferry.cli import doctor, run  # registers `s3ferry doctor` and `s3ferry run` on main
from s3ferry.cli.app import main

__all__ = ["doctor", "main", "run"]

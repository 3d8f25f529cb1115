"""``python -m s3ferry``: the command line."""

from s3ferry.cli import main

main()

"""``python -m crosswatchd.cli``: the same as the ``crosswatchd`` command."""

from crosswatchd.cli import main

main()

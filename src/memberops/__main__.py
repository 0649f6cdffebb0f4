"""``python -m memberops …``: the same command line as the ``memberops`` script."""

from memberops.cli import main

main()

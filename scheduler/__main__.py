"""``python -m scheduler`` is the ``greensched`` command."""

from scheduler.cli import main

main()

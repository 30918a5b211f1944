"""``python -m scheduler`` is the ``greensched`` command."""

from scheduler.drivers.cli import main

main()

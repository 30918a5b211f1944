"""``python -m scheduler.drivers.service serve ...`` / ``caps ...``: the service commands."""

import typer

from scheduler.drivers.cli import run
from scheduler.drivers.service.commands import caps_app, serve

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command()(serve)
app.add_typer(caps_app, name="caps")
run(app)

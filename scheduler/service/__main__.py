"""``python -m scheduler.service serve ...`` / ``caps ...``: the service commands on their own."""

import typer

from scheduler.service.commands import caps_app, serve

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command()(serve)
app.add_typer(caps_app, name="caps")
app()

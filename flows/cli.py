"""The ``discovery`` command: the human entry point to every pipeline stage.

Each stage registers its sub-commands from a module in :mod:`flows.commands`; this file
only assembles them, so the CLI stays a thin caller of the functions in ``tasks/``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

import typer

import flows.commands

app = typer.Typer(
    name="discovery",
    help="Generate crystals with symmetry-aware models and estimate how many are S.U.N.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register_commands() -> None:
    """Import every module of :mod:`flows.commands` and let it add its commands."""
    for info in sorted(pkgutil.iter_modules(flows.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"flows.commands.{info.name}")
        module.register(app)


_register_commands()

if __name__ == "__main__":
    app()

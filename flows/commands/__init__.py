"""CLI command modules; each defines ``register(app: typer.Typer) -> None``.

Options that mirror a config field default to ``None`` and say the config's default in
their help (:func:`default_of`), so a default is written once, in the config model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def default_of(model: type[BaseModel], field: str) -> Any:
    """The default of a config field (for option help texts)."""
    return model.model_fields[field].get_default(call_default_factory=True)


def given(**options: Any) -> dict[str, Any]:
    """The options the user set (``None`` means "use the config's default")."""
    return {k: v for k, v in options.items() if v is not None}

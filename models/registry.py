"""The generative models by name: :func:`get_model` returns a :class:`GenerativeModel`.

Each model's module is imported only when it is asked for, so naming a model is cheap
(``discovery --help`` imports no torch). The CLI, the Prefect flows and the benchmarks train
and sample through this registry and the contract of :mod:`models.contract` (typed
:class:`~models.contract.TrainRequest` / :class:`~models.contract.SampleRequest`); a
benchmark that changes a model's config writes it as a profile the request names, and one
that sweeps a setting only one model has (MCFlow's anti-annealing slope) or measures the
network itself calls that model's own module with the same request.
"""

from __future__ import annotations

from collections.abc import Callable

from models.contract import GenerativeModel


def _symadit() -> GenerativeModel:
    from models.symadit.api import SymADiTModel

    return SymADiTModel()


def _mcflow() -> GenerativeModel:
    from models.mcflow.api import MCFlowModel

    return MCFlowModel()


_FACTORIES: dict[str, Callable[[], GenerativeModel]] = {"symadit": _symadit, "mcflow": _mcflow}


def check_profile(name: str, profile: str) -> None:
    """Validate a model's profile (YAML path or name) without importing the model.

    Raises
    ------
    tasks.core.config.ConfigError
        The profile is missing or invalid (the message names the file and key).
    KeyError
        No model has that name.
    """
    if name == "symadit":
        from models.symadit.config import load_symadit_config

        load_symadit_config(profile)
    elif name == "mcflow":
        from models.mcflow.config import resolve_config

        resolve_config(profile)
    else:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(_FACTORIES)}")


def model_names() -> tuple[str, ...]:
    """Names of the registered models."""
    return tuple(_FACTORIES)


def get_model(name: str) -> GenerativeModel:
    """The model registered as ``name``.

    Raises
    ------
    KeyError
        No model has that name (the message lists the known ones).
    """
    if name not in _FACTORIES:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(_FACTORIES)}")
    return _FACTORIES[name]()

"""The project's top-level package names are its own, and its config modules stay light."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import support

from tasks.core.paths import REPO_ROOT

OURS = ("tasks", "models", "flows")


def test_no_other_distribution_provides_our_top_level_packages() -> None:
    providers = packages_distributions()
    for name in OURS:
        others = [d for d in providers.get(name, []) if d != "crystal-discovery"]
        assert not others, f"top-level '{name}' is also installed by {others}"
        module = __import__(name)
        assert Path(module.__file__).resolve().parent == REPO_ROOT / name


def test_test_helpers_import_from_this_repository() -> None:
    # mace-torch installs a top-level `tests` package: our helpers are `support.*` instead
    assert Path(support.__file__).resolve().parent == REPO_ROOT / "tests" / "support"


def test_loading_a_profile_imports_nothing_heavy() -> None:
    code = (
        "import sys, json\n"
        "from tasks.core.config import load_config\n"
        "from tasks.pipeline.config import PipelineConfig\n"
        "load_config('quick', PipelineConfig)\n"
        "heavy = ['torch', 'prefect', 'chgnet', 'mace', 'atomate2', 'pymatgen.analysis']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

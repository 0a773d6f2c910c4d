"""Conformance with the published tables, on crystals other groups generated and released.

``../shared/data/published_samples/`` holds DiffCSP's 10,000 and CrystalFormer's 999 de novo
MP-20 samples as released, with the figures published for exactly those files. Validity must
equal them to the crystal; the symmetry figures, at the papers' tolerance (pymatgen's
defaults), must land within sampling noise of the SymADiT table's DiffCSP row, which was
measured on another 10,000 DiffCSP samples. The full sets run in ``benchmarks/conformance.py``.
"""

from __future__ import annotations

import pytest

from tasks.core.structure_io import read_structures
from tasks.evaluate.distributions import distribution_metrics
from tasks.evaluate.funnel import Reference, run_symmetry, run_validity
from tasks.evaluate.settings import EvaluateConfig


@pytest.fixture(scope="module")
def published(shared_data):
    path = shared_data / "published_samples"
    if not path.is_dir():
        pytest.skip(f"no published samples at {path}")
    return path


@pytest.mark.parametrize(
    ("name", "n", "n_struct", "n_comp", "struct_pct", "comp_pct"),
    [
        # WyFormer's evaluation notebook on these files (published_samples/README.md)
        ("diffcsp_mp20_10k", 10_000, 10_000, 8_322, 100.00, 83.22),
        ("crystalformer_mp20_999", 999, 933, 849, 93.39, 84.98),
    ],
)
def test_validity_equals_the_published_figures(
    published, name, n, n_struct, n_comp, struct_pct, comp_pct
):
    samples = read_structures(published / f"{name}.extxyz")
    verdicts = run_validity([s for _, s, _ in samples], EvaluateConfig(workers=2))
    assert len(verdicts) == n
    valid_struct = sum(v.valid_struct for v in verdicts)
    valid_comp = sum(v.valid_comp for v in verdicts)
    assert (valid_struct, valid_comp) == (n_struct, n_comp)
    assert round(100 * valid_struct / n, 2) == struct_pct
    assert round(100 * valid_comp / n, 2) == comp_pct


def test_diffcsp_symmetry_within_noise_of_the_symadit_table(published, shared_data, tmp_path):
    """The first 500 DiffCSP samples against 1,000 training crystals, default settings.

    SymADiT Table 1, DiffCSP row: P1 70.60 %, d_SG 0.85. At 500 crystals one standard error
    of P1 is 2.0 points; the full 10,000 give 70.71 % and 0.854 (benchmarks/results). The
    figures come from the evaluation's own symmetry stage and reference summaries, as
    :func:`tasks.evaluate.funnel.evaluate_samples` computes them.
    """
    config = EvaluateConfig(workers=2, cache_dir=tmp_path)
    assert (config.symprec, config.angle_tolerance) == (0.01, 5.0)  # pymatgen's defaults
    structures = [
        s for _, s, _ in read_structures(published / "diffcsp_mp20_10k.extxyz", limit=500)
    ]
    reference = Reference(shared_data / "fixtures" / "mp20_train_sample1000.csv.gz", config)
    d = distribution_metrics(
        run_symmetry(structures, config),
        reference.symmetry(),
        config.symprec,
        config.angle_tolerance,
    )
    assert 100 * d.p1_rate == pytest.approx(70.60, abs=2.0)
    assert d.d_sg == pytest.approx(0.85, abs=0.03)
    # at 0.1 Å (the tolerance used before) the same crystals look far more symmetric
    coarse = run_symmetry(structures, config.model_copy(update={"symprec": 0.1}))
    assert sum(info.spacegroup == 1 for info in coarse) / len(coarse) < 0.4

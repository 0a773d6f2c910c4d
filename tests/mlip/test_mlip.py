"""MLIP backends: CHGNet for real, MACE / matgl through small random models on local paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from support.mace import tiny_mace

from tasks.mlip.ase_engine import relax_structure
from tasks.mlip.backends import MLIPUnavailableError, load_mlip, sha256_file
from tasks.mlip.settings import MLIPConfig, RelaxConfig


def _nacl_atoms():
    return bulk("NaCl", "rocksalt", a=5.6)


def test_chgnet_default_is_offline_and_versioned():
    backend = load_mlip()
    assert backend.name == "chgnet"
    assert backend.version.startswith("chgnet-0.4.2:0.3.0")
    atoms = _nacl_atoms()
    atoms.calc = backend.calculator()
    energy = atoms.get_potential_energy()
    # CHGNet 0.3.0 on MP2020-corrected scale: NaCl is about -3.4 eV/atom
    assert -4.0 < energy / len(atoms) < -3.0
    assert atoms.get_stress().shape == (6,)


def test_missing_chgnet_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "nope.pth.tar"
    with pytest.raises(MLIPUnavailableError, match=r"nope\.pth\.tar"):
        load_mlip(MLIPConfig(model=str(missing)))


def test_missing_mace_model_names_file_and_url(tmp_path):
    with pytest.raises(MLIPUnavailableError) as err:
        load_mlip(MLIPConfig(name="mace", model="medium-mpa-0", cache_dir=tmp_path))
    message = str(err.value)
    assert str(tmp_path) in message and "https://github.com/ACEsuit" in message
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_missing_matgl_model_names_files(tmp_path):
    with pytest.raises(MLIPUnavailableError, match=r"model\.json.*matgl\.load_model"):
        load_mlip(
            MLIPConfig(name="matgl", model="M3GNet-MatPES-PBE-v2025.1-PES", cache_dir=tmp_path)
        )


def test_backends_without_model_explain_what_is_needed():
    for name in ("mace", "matgl"):
        with pytest.raises(MLIPUnavailableError, match="needs a model"):
            load_mlip(MLIPConfig(name=name))


def test_mace_local_model_path(tmp_path):
    path = tmp_path / "tiny.model"
    tiny_mace(path)
    backend = load_mlip(MLIPConfig(name="mace", model=str(path), model_sha256=sha256_file(path)))
    assert backend.version.startswith("mace-0.3.16:tiny.model@")
    result = relax_structure(
        _structure(), backend.calculator(), RelaxConfig(steps=3, max_volume_ratio=100)
    )
    assert np.isfinite(result.energy), result.reason
    # the MACE import must not leave torch's weights-only loading disabled
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_matgl_local_model_directory(tmp_path):
    from matgl.apps.pes import Potential
    from matgl.models import M3GNet

    torch.manual_seed(0)
    model = M3GNet(element_types=("Na", "Cl"), dim_node_embedding=8, dim_edge_embedding=8,
                   units=8, nblocks=1, max_n=2, max_l=2, is_intensive=False)  # fmt: skip
    Potential(model=model).save(tmp_path / "tiny-m3gnet")
    approved = sha256_file(tmp_path / "tiny-m3gnet")
    backend = load_mlip(
        MLIPConfig(name="matgl", model="tiny-m3gnet", cache_dir=tmp_path, model_sha256=approved)
    )
    assert backend.version.startswith("matgl-4.1.2:tiny-m3gnet@")
    atoms = _nacl_atoms()
    atoms.calc = backend.calculator()
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (2, 3)
    assert np.all(np.isfinite(atoms.get_stress()))


def test_pickled_models_load_only_when_approved(tmp_path):
    path = tmp_path / "tiny.model"
    tiny_mace(path)
    with pytest.raises(MLIPUnavailableError, match=f"mlip.model_sha256: {sha256_file(path)}"):
        load_mlip(MLIPConfig(name="mace", model=str(path)))
    wrong = "0" * 64
    with pytest.raises(MLIPUnavailableError, match="does not match"):
        load_mlip(MLIPConfig(name="mace", model=str(path), model_sha256=wrong))


def test_a_chgnet_checkpoint_loads_weights_only(tmp_path):
    import shutil

    import chgnet

    bundled = next((Path(chgnet.__file__).parent / "pretrained" / "0.3.0").glob("*.pth.tar"))
    local = tmp_path / "my-chgnet.pth.tar"
    shutil.copy(bundled, local)
    backend = load_mlip(MLIPConfig(model=str(local)))  # no approval needed: no unpickling
    atoms = _nacl_atoms()
    atoms.calc = backend.calculator()
    assert np.isfinite(atoms.get_potential_energy())


def test_version_tracks_model_content(tmp_path):
    path = tmp_path / "tiny.model"
    tiny_mace(path)
    first = load_mlip(
        MLIPConfig(name="mace", model=str(path), model_sha256=sha256_file(path))
    ).version
    path.write_bytes(path.read_bytes() + b"\0")
    assert (
        load_mlip(MLIPConfig(name="mace", model=str(path), model_sha256=sha256_file(path))).version
        != first
    )


def _structure():
    from tasks.mlip.results import atoms_to_structure

    return atoms_to_structure(_nacl_atoms())

"""Fault injection: every kind of bad input through every reader, through the real CLI.

One CSV holds three good MP-20 rows and one row per fault (a non-UTF-8 byte, a repeated id,
an empty id, a cell of 10^8 Å, a coordinate of 10^30, overlapping atoms, partial occupancy,
garbage, an empty field, curium, which CHGNet was not trained on). Every stage must return
one row per input row, a reason for each bad one, and an exit code that tells the truth.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def _cif(structure: Structure) -> str:
    return structure.to(fmt="cif")


def _quote(text: str) -> bytes:
    return b'"' + text.replace('"', '""').encode() + b'"'


@pytest.fixture(scope="module")
def faults(tmp_path_factory, mp20_test_sample):
    """The faulty CSV and what each row must come out as."""
    root = tmp_path_factory.mktemp("faults")
    good = pd.read_csv(mp20_test_sample, nrows=3)
    salt = [[0, 0, 0], [0.5, 0.5, 0.5]]
    bad = {
        "huge-cell": _cif(Structure(Lattice.cubic(1e8), ["Na", "Cl"], salt)),
        "far-coord": _cif(Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[1e30, 0, 0], [0.5] * 3])),
        "overlap": _cif(Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])),
        "disordered": _cif(Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])),
        "garbage": "data_x\n_this is not a cif\n",
        "empty": "",
        "curium": _cif(
            Structure(Lattice.cubic(5.4), ["Cm", "O", "O"], [[0, 0, 0], [0.25] * 3, [0.75] * 3])
        ),
    }
    lines = [b"material_id,cif"]
    lines += [
        mid.encode() + b"," + _quote(cif)
        for mid, cif in zip(good["material_id"], good["cif"], strict=True)
    ]
    lines += [key.encode() + b"," + _quote(cif) for key, cif in bad.items()]
    lines.append(b"non-utf8," + _quote("data_q\n")[:-1] + b'\xff"')
    lines.append(good["material_id"][0].encode() + b"," + _quote(good["cif"][0]))  # repeated id
    lines.append(b"," + _quote(good["cif"][1]))  # empty id
    path = root / "faults.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    first = good["material_id"][0]
    expected = {
        "huge-cell": "lattice vector",
        "far-coord": "fractional coordinate",
        "overlap": "overlapping atoms",
        "disordered": "partial occupancy",
        "garbage": "malformed cif",
        "empty": "empty cif field",
        "non-utf8": "non-UTF-8 bytes",
    }
    # a repeated id is one more crystal, read as <id>#2
    return {"path": path, "n_rows": len(lines) - 1, "good": [*good["material_id"], f"{first}#2"],
            "expected": expected, "generated": f"faults:row-{len(lines) - 2}"}  # fmt: skip


def _reasons(frame: pd.DataFrame, strip: str = "") -> dict[str, str]:
    return {
        str(i).removeprefix(strip): str(r)
        for i, r in zip(frame["id"], frame["reason"], strict=True)
    }


def test_ingest_accounts_for_every_row(faults, tmp_path) -> None:
    out = tmp_path / "ingest"
    start = time.perf_counter()
    result = runner.invoke(
        app, ["ingest", str(faults["path"]), "--out", str(out), "-j", "1",
              "--cache-dir", str(tmp_path / "cache")]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 120  # the 1e8 Å cell is refused, not analysed
    records = pd.read_parquet(out / "faults" / "dataset.parquet")
    assert len(records) == faults["n_rows"]
    reasons = _reasons(records, "faults:")
    for key, why in faults["expected"].items():
        assert why in reasons[key], (key, reasons[key])
    rejects = pd.read_csv(out / "faults" / "rejects.csv")
    assert set(rejects["id"]) == {f"faults:{k}" for k in faults["expected"]}
    ok = records[records["status"] == "ok"]["id"].str.removeprefix("faults:")
    assert set(ok) == {*faults["good"], "curium", faults["generated"]}


def test_evaluate_judges_every_row(faults, tmp_path, mp20_train_sample) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["evaluate", str(faults["path"]), "--reference", str(mp20_train_sample),
              "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    verdicts = pd.read_parquet(out / "verdicts.parquet").set_index("id")
    assert len(verdicts) == faults["n_rows"]
    for key, why in faults["expected"].items():
        row = verdicts.loc[key]
        assert not row["valid_struct"], key
        assert why in row["read_reason"] or why in row["struct_reason"], (key, row.to_dict())
    assert verdicts.loc[faults["good"], "valid_struct"].all()


@pytest.fixture(scope="module")
def relaxed(faults, tmp_path_factory):
    out = tmp_path_factory.mktemp("relax")
    result = runner.invoke(
        app, ["relax", str(faults["path"]), "--out", str(out), "--steps", "0",
              "--scheduler", "serial"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_relax_accounts_for_every_row(faults, relaxed) -> None:
    table = pd.read_parquet(relaxed / "relaxed.parquet")
    assert len(table) == faults["n_rows"] and table["id"].is_unique
    reasons = _reasons(table)
    for key, why in faults["expected"].items():
        assert why in reasons[key], (key, reasons[key])
    assert "element Cm not supported by chgnet" in reasons["curium"]  # before the model runs
    good = table.set_index("id").loc[[*faults["good"], faults["generated"]]]
    assert (good["status"] == "ok").all()


def test_hull_keeps_every_row(faults, relaxed, tmp_path) -> None:
    result = runner.invoke(app, ["hull", str(relaxed), "--out", str(tmp_path / "hull")])
    assert result.exit_code == 0, result.output
    hull = pd.read_parquet(tmp_path / "hull" / "hull.parquet").set_index("id")
    assert len(hull) == faults["n_rows"]
    assert (hull.loc[list(faults["expected"]), "hull_status"] == "failed").all()
    assert (hull.loc[faults["good"], "hull_status"] == "ok").all()


def test_dft_submit_without_sbatch_fails_loudly(faults, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    work = tmp_path / "dft"
    result = runner.invoke(app, ["dft", "submit", str(faults["path"]), "-w", str(work)])
    assert result.exit_code == 1
    assert "failed: sbatch not found" in result.output
    rejected = json.loads((work / "rejected.json").read_text())
    assert set(faults["expected"]) <= set(rejected)  # every bad row recorded with its reason

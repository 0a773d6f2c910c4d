"""The S.U.N. graph in a real Prefect test harness, on a micro profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.discovery import discovery_flow
from tasks.mlip.documents import HULL_SUMMARY, HullSummary
from tasks.pipeline.checkpoints import CheckpointInfo
from tasks.pipeline.report import STANDIN_WARNING


def test_discovery_flow_two_rounds_end_to_end(micro: Path, prefect_harness) -> None:
    # every crystal the stand-in completes counts as metastable, so round 1 surely confirms
    # some and the closed loop has something to carry into round 2 (the old key of the
    # threshold, now stability.metastable_below, is still accepted)
    loose = {"rounds": 2, "dft.hull.metastable_below": 1e6, "loop.finetune": True,
             "loop.steps": 20, "loop.discovered_weight": 3}  # fmt: skip
    result = discovery_flow(profile=str(micro), run_id="e2e", overrides=loose)
    run = micro.parent / "runs" / "e2e"
    report = Path(result["report"])
    assert report == run / "report" / "index.html" and report.exists()
    markdown = (run / "report" / "report.md").read_text()
    assert markdown.splitlines()[0].endswith(f"**{STANDIN_WARNING}**")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"mcflow/round1", "mcflow/round2"}
    verdicts = pd.read_parquet(run / "round-1" / "mcflow" / "filters" / "verdicts.parquet")
    samples = pd.read_parquet(run / "round-1" / "mcflow" / "samples" / "samples.parquet")
    assert list(verdicts["id"]) == list(samples["id"])  # every sample judged, none dropped
    assert (run / "config.yaml").exists()

    # the closed loop: round 1's confirmed crystals are references of round 2
    dft1 = pd.read_parquet(run / "round-1" / "mcflow" / "dft" / "dft_results.parquet")
    confirmed = set(dft1.loc[dft1["metastable"].astype(bool), "id"])
    assert confirmed, dft1.to_string()
    discovered = run / "discovered" / "round-1.parquet"
    assert set(pd.read_parquet(discovered)["id"]) == confirmed
    # round 2's novelty reference: the training set, then round 1's discoveries
    filters1, filters2 = (
        json.loads((run / f"round-{k}" / "mcflow" / "filters" / "metrics.json").read_text())
        for k in (1, 2)
    )
    train = filters1["reference"]["path"]
    assert train.endswith("dataset.parquet")
    assert filters2["reference"]["path"] == f"{train} + {discovered}"
    hull2 = HullSummary.read(run / "round-2" / "mcflow" / "mlip" / "hull" / HULL_SUMMARY)
    # the hull: every MP-20 / MPTS-52 phase (the shipped table) plus round 1's discoveries
    assert hull2.reference.startswith("every MP-20 / MPTS-52 phase")
    assert str(discovered) in hull2.reference

    # the learning loop: round 2 sampled a checkpoint fine-tuned on data holding round 1's
    # discoveries (three copies each), not round 1's checkpoint
    first, second = (
        CheckpointInfo.read(run / f"round-{k}" / "mcflow" / "checkpoint.json") for k in (1, 2)
    )
    assert first.checkpoint_id != second.checkpoint_id
    assert second.init_from == first.checkpoint
    account = json.loads((run / "loop" / "round-2" / "finetune.json").read_text())
    assert set(account["discovered_ids"]) == confirmed
    finetune_set = pd.read_parquet(run / "loop" / "round-2" / "finetune.parquet")
    copies = finetune_set[finetune_set["source"] == "discovered"]
    assert len(copies) == 3 * len(confirmed) and set(copies["round"]) == {1}
    # every copy is trained on (the 2 % validation split may hold one crystal more)
    assert 0 <= first.n_train + len(copies) - second.n_train <= 1
    assert "## Round by round" in markdown and (run / "report" / "rounds.png").exists()
    assert "MLIP: not fine-tuned" in markdown
    assert "MLIP stable / V.U.N." in metrics["mcflow/round2"]

    # the report is rebuilt from the run directory alone
    shutil.rmtree(run / "report")
    (run / "metrics.json").unlink()
    rebuilt = CliRunner().invoke(app, ["report", str(run)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (run / "report" / "report.md").read_text() == markdown
    assert json.loads((run / "metrics.json").read_text()) == metrics

    # a cached stage whose files were deleted is recomputed, not trusted
    verdicts_file = run / "round-1" / "mcflow" / "filters" / "verdicts.parquet"
    verdicts_file.unlink()
    again = discovery_flow(profile=str(micro), run_id="e2e", overrides=loose)
    assert verdicts_file.exists() and again["metrics"] == result["metrics"]


@pytest.mark.slow  # about 3.5 minutes: round 2 recomputes its reference phases' energies
def test_discovery_flow_fine_tunes_the_mlip_between_rounds(micro: Path, prefect_harness) -> None:
    loose = {"rounds": 2, "dft.hull.metastable_below": 1e6, "loop.mlip_finetune": True,
             "loop.mlip_epochs": 3}  # fmt: skip
    discovery_flow(profile=str(micro), run_id="e2e-mlip", overrides=loose)
    run = micro.parent / "runs" / "e2e-mlip"
    dft1 = pd.read_parquet(run / "round-1" / "mcflow" / "dft" / "dft_results.parquet")
    hull1, hull2 = (
        HullSummary.read(run / f"round-{k}" / "mcflow" / "mlip" / "hull" / HULL_SUMMARY)
        for k in (1, 2)
    )
    # the MLIP learned round 1's DFT results; round 2 relaxed and built its whole hull with
    # that version (no energy of the base MLIP's table in it)
    tuned = json.loads((run / "loop" / "round-2" / "mlip" / "finetune.json").read_text())
    assert tuned["ids"] and set(tuned["ids"]) == set(
        dft1.loc[dft1["dft_status"] == "completed", "id"]
    )
    assert hull1.mlip_version == tuned["base"] != tuned["version"] == hull2.mlip_version
    assert f"{tuned['version']} single point energies computed" in hull2.reference
    markdown = (run / "report" / "report.md").read_text()
    assert "MLIP: fine-tuned after every round" in markdown


def test_wrong_parameters_fail_before_any_work(tmp_path: Path, micro: Path) -> None:
    with pytest.raises(ValueError, match="neither a file nor a profile"):
        discovery_flow.fn(profile="no-such-profile")
    with pytest.raises(ValueError, match=r"selection\.n_dft"):
        discovery_flow.fn(profile=str(micro), overrides={"selection.n_dft": -1})
    bad = yaml.safe_load(micro.read_text())
    bad["models"][0]["name"] = "gpt"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=r"models\.0\.name"):
        discovery_flow.fn(profile=str(tmp_path / "bad.yaml"))
    assert not (micro.parent / "runs").exists()


def test_a_run_may_not_override_commands_paths_or_models(micro: Path, monkeypatch) -> None:
    for key in ("dft.dft.vasp_cmd", "dft.slurm.setup_commands", "mlip.model", "run_root"):
        with pytest.raises(ValueError, match=f"overrides of {key} are not allowed"):
            discovery_flow.fn(profile=str(micro), overrides={key: "x"})
    monkeypatch.delenv("DISCOVERY_PROFILE_DIRS")
    with pytest.raises(ValueError, match="outside the repository"):
        discovery_flow.fn(profile=str(micro))


def test_any_generators_samples_go_through_the_whole_graph(micro: Path, prefect_harness) -> None:
    """``discovery screen``: a released file (a repeated id, an unreadable frame) end to end."""
    from tasks.core.paths import SAMPLES_DIR
    from tasks.core.structure_io import split_extxyz_frames

    text = (SAMPLES_DIR / "diffcsp_mp20_first64.extxyz").read_text()
    frames = [f for f, _ in split_extxyz_frames(text)]
    released = micro.parent / "released.extxyz"
    # six crystals, the first again under the same id, and a frame that is not a crystal
    released.write_text("".join(frames[:6]) + frames[0] + "2\nnot a lattice\nH 0 0 0\nH 0 0 1\n")
    profile = yaml.safe_load(micro.read_text())
    profile["selection"]["max_relax"] = 2
    profile["dft"] = {"mode": "skip"}
    micro.write_text(yaml.safe_dump(profile))
    result = CliRunner().invoke(
        app, ["screen", str(released), "--label", "Theirs", "--config", str(micro),
              "--run-id", "screen"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = micro.parent / "runs" / "screen"
    assert not (run / "checkpoints").exists()  # nothing trained
    round_dir = run / "round-1" / "Theirs"
    samples = pd.read_parquet(round_dir / "samples" / "samples.parquet")
    verdicts = pd.read_parquet(round_dir / "filters" / "verdicts.parquet")
    assert list(verdicts["id"]) == list(samples["id"]) and len(samples) == 8
    status = dict(zip(samples["id"], samples["status"], strict=True))
    assert status["DiffCSP:0#2"] == "ok"  # the repeated id is one more crystal
    assert list(status.values()).count("failed") == 1
    screened = pd.read_csv(round_dir / "screened" / "screened.csv")
    assert len(screened) == 2  # selection.max_relax
    for column in ("e_hull", "energy", "flags", "matched_reference", "valid_comp", "cif"):
        assert column in screened.columns
    done = screened[screened["relax_status"] == "ok"]
    assert len(done) and all((round_dir / "screened" / c).is_file() for c in done["cif"])
    markdown = (run / "report" / "report.md").read_text()
    leaderboard = markdown.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    assert "| Theirs | 1 |" in leaderboard and "0.01 Å, 5°" in leaderboard

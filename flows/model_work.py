"""Training, fine-tuning and sampling of the generative models, here or on the GPU work pool.

:func:`train_model` and :func:`sample_model` are what the ``discovery`` flow's ``train``,
``finetune`` and ``sample`` stages do. With ``model_deployment`` set in the profile
(``model-work/gpu`` in ``prefect.yaml``), the stages instead start the :func:`model_work` flow
of that deployment, so a worker on a GPU host does the model work while the rest of the
graph stays where it runs; the flow waits for it and reads the result path the remote run
wrote next to its outputs (the run directory must be on a filesystem both hosts see).
Without a deployment, a run with a Dask cluster does its model work in a process of its own,
beside the cluster's workers (:func:`run_model_work`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow

from flows.parallel import OWN_PROCESS_PRELOAD
from models.contract import FineTune, SampleRequest, TrainRequest
from models.registry import get_model
from tasks.core.cluster import Cluster
from tasks.core.documents import StageDocument
from tasks.core.mapping import in_own_process
from tasks.pipeline.config import ModelRun

Action = Literal["train", "finetune", "sample"]
RESULT_FILE = "model_work.json"


def train_model(
    model: ModelRun, dataset: str, out_dir: str, finetune: FineTune | None = None
) -> str:
    """Train the model on the dataset (resuming a crashed run), or use its checkpoint; with
    ``finetune``, continue that checkpoint on the dataset instead."""
    if model.checkpoint is not None and finetune is None:
        return str(model.checkpoint)
    request = TrainRequest(
        profile=model.profile,
        dataset=Path(dataset),
        out_dir=Path(out_dir),
        resume=True,
        finetune=finetune,
    )
    return str(get_model(model.name).train(request))


def sample_model(model: ModelRun, checkpoint: str, out_dir: str, seed: int) -> str:
    """Draw the model's de novo samples into ``out_dir/samples.parquet``."""
    request = SampleRequest(
        checkpoint=Path(checkpoint),
        task="dng",
        n=model.n_samples,
        steps=model.steps,
        seed=seed,
        out_dir=Path(out_dir),
    )
    get_model(model.name).sample(request)
    return str(Path(out_dir) / "samples.parquet")


class ModelWorkResult(StageDocument):
    """``model_work.json``: what a model-work run made (a checkpoint or a samples table),
    read back by the caller when the work ran in a deployment elsewhere."""

    action: Action
    result: str


def do_model_work(
    action: Action,
    model: ModelRun,
    source: str,
    out_dir: str,
    seed: int = 0,
    finetune: FineTune | None = None,
) -> str:
    """Train or fine-tune (``source`` = dataset) or sample (``source`` = checkpoint) one model.

    The result path is also written to ``out_dir/model_work.json`` for the caller. As the
    flow :data:`model_work` it is what the ``model-work/gpu`` deployment runs.
    """
    if action in ("train", "finetune"):
        result = train_model(model, source, out_dir, finetune if action == "finetune" else None)
    else:
        result = sample_model(model, source, out_dir, seed)
    ModelWorkResult(action=action, result=result).write(Path(out_dir) / RESULT_FILE)
    return result


#: The model work as a Prefect flow (entry point of the ``model-work/gpu`` deployment).
model_work = flow(name="model-work")(do_model_work)


def run_model_work(
    deployment: str | None,
    cluster: Cluster | None,
    action: Action,
    model: ModelRun,
    source: str,
    out_dir: str,
    seed: int,
    finetune: FineTune | None = None,
) -> str:
    """Do the model work on ``deployment``'s work pool, else in a process of its own when
    the run has a Dask cluster (its models' branches then run side by side: each model trains
    and samples in its own process, one torch thread each), else in this process; wait for it
    and return its result path.

    Raises
    ------
    RuntimeError
        When the remote run does not complete (its state and the deployment are named).
    """
    if deployment is None and cluster is not None:
        args = (action, model, source, out_dir, seed, finetune)
        return in_own_process(do_model_work, *args, preload=OWN_PROCESS_PRELOAD)
    if deployment is None:
        return do_model_work(action, model, source, out_dir, seed, finetune)
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    parameters = {
        "action": action,
        "model": model.model_dump(mode="json"),
        "source": source,
        "out_dir": out_dir,
        "seed": seed,
        "finetune": finetune.model_dump(mode="json") if finetune else None,
    }
    run = run_deployment(deployment, parameters=parameters, timeout=None)
    assert isinstance(run, FlowRun)  # called from sync code: the run, not a coroutine
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise RuntimeError(f"{action} of {model.name} on {deployment}: run {run.name} {state}")
    return ModelWorkResult.read(Path(out_dir) / RESULT_FILE).result

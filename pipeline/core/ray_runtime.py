"""Per-item work on Ray: one Ray Data ``map_batches`` over an actor pool.

Each actor builds its model once (``ItemTask.setup``) and then handles items
(a video, a clip) one at a time. A failing item does not take down the run:
its error comes back beside the item, and the stage records it as a rejection.

Resources (DESIGN.md "One machine to many"): actors ask for one GPU each when
the cluster has GPUs, fractional CPUs when not (on a 2-core laptop a pool of
whole-CPU actors can starve Ray Data's own read task and hang; see STACK.md).
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from pipeline.core.progress import Log, track


class ItemTask(Protocol):
    """Work for one item; picklable, so it can be shipped to Ray actors."""

    def setup(self) -> None: ...

    def __call__(self, item: dict) -> Any: ...


@dataclass(frozen=True)
class ItemResult:
    item: dict
    value: Any          # the task's return value, or None on error
    error: str          # "" on success, else "<ExceptionType>: <message>"


def ensure_ray(address: str = "") -> None:
    """Connect to ``address`` (RAY_ADDRESS) or start a local Ray on this machine, once per process."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": always a fresh Ray for this process, never a cluster that `ray start` left on the machine.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own bar counts finished items
    ctx.verbose_progress = False


def pool_shape(num_actors: int = 0, cpus_per_actor: float = 0.5, gpu: bool | None = None) -> dict:
    """Actor count and per-actor resources for the cluster Ray is connected to (``gpu`` None: GPU actors when the
    cluster has GPUs; False: CPU actors; True: GPU actors, an error when the cluster has none)."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpu and not gpus:
        raise RuntimeError("this stage runs on GPU actors and the Ray cluster has no GPU")
    if gpus and gpu is not False:
        return {"size": num_actors or gpus, "num_gpus": 1, "num_cpus": 1}
    cpus = resources.get("CPU", 1)
    cpu_nodes = sum(1 for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0)
    # About 3/4 of the CPUs (the rest for Ray Data's driver and the decoders), rounded up so that a 2-core
    # laptop gets 2 actors (per-clip pose estimation is the slowest stage: bench/results/curation_real.md),
    # and at least one actor on every node.
    size = num_actors or max(1, cpu_nodes, math.ceil(cpus * 0.75))
    return {"size": size, "num_gpus": 0, "num_cpus": cpus_per_actor}


class _TaskActor:
    """Ray Data callable class: set the task up once, then run it per item."""

    def __init__(self, task: ItemTask):
        self.task = task
        self.task.setup()

    def __call__(self, batch: dict) -> dict:
        results, errors = [], []
        for payload in batch["payload"]:
            item = pickle.loads(payload)
            try:
                results.append(pickle.dumps(self.task(item)))
                errors.append("")
            except Exception as err:  # one bad item must not stop the stage
                results.append(pickle.dumps(None))
                errors.append(f"{type(err).__name__}: {err}")
        return {"payload": list(batch["payload"]), "result": results, "error": errors}


def map_items(items: list[dict], task: ItemTask, desc: str, log: Log | None = None,
              ray_address: str = "", num_actors: int = 0, gpu: bool | None = None) -> Iterator[ItemResult]:
    """Run ``task`` on every item on Ray; yield results as they finish (any order).

    Items go out one at a time to whichever actor is free (no queue of items per actor: an item is
    a whole video or clip, seconds to minutes of work), in the given order, so a caller that puts
    the longest items first gets a balanced pool. Measured with 2 actors on the five real videos'
    lengths: Ray Data's default (up to 4 items queued per actor), file order, gave one actor 1364
    frames of pose work and the other 478; one at a time and longest first gives 959 and 883."""
    if not items:
        return
    import ray.data
    from ray.data import ActorPoolStrategy

    ensure_ray(ray_address)
    shape = pool_shape(num_actors, gpu=gpu)
    size = min(shape["size"], len(items))
    dataset = ray.data.from_items([{"payload": pickle.dumps(item)} for item in items], override_num_blocks=len(items))
    mapped = dataset.map_batches(
        _TaskActor,
        fn_constructor_kwargs={"task": task},
        compute=ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
        batch_size=1,
        num_cpus=shape["num_cpus"],
        num_gpus=shape["num_gpus"],
    )
    rows = mapped.iter_rows()
    for row in track(rows, total=len(items), desc=desc, log=log, unit="item"):
        yield ItemResult(item=pickle.loads(row["payload"]), value=pickle.loads(row["result"]), error=str(row["error"]))


def fit_torch_trainer(worker: Callable[[dict], None], job: dict, shared_key: str, *, out_dir: str | Path,
                      run_name: str, num_workers: int, use_gpu: bool | None, max_failures: int = 0,
                      ray_address: str = "", log: Log = print) -> tuple[str, str]:
    """Run ``worker(job)`` on ``num_workers`` Ray Train workers (`TorchTrainer`, DDP process group).

    ``job[shared_key]`` (the training data) travels once through the object store; checkpoints and Ray's run
    folder live under ``out_dir``; ``use_gpu`` None means GPU workers when the cluster has GPUs. A failed run
    raises with Ray's error. Returns (run name, run folder).
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ensure_ray(ray_address)
    use_gpu = use_gpu if use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    trainer = TorchTrainer(
        worker,
        train_loop_config={**job, shared_key: ray.put(job[shared_key])},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(name=run_name, storage_path=str((Path(out_dir) / "ray").resolve()),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    log(f"Ray Train: {num_workers} {'GPU' if use_gpu else 'CPU'} worker(s), run {run_name}")
    result = trainer.fit()
    if result.error:
        raise RuntimeError(f"Ray Train run {run_name} failed: {result.error}") from result.error
    return run_name, str(result.path)

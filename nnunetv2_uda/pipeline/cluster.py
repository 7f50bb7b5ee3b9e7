"""Steps and prediction parts as tasks on Dask distributed: a ``LocalCluster`` of single-threaded worker processes on
this machine, or the workers of the scheduler at the config's ``scheduler`` address (e.g. started by
``dask-jobqueue`` on SLURM/PBS).

With ``parallel_steps`` above 1 the runner (:mod:`nnunetv2_uda.pipeline.runner`) submits each step whose upstream
steps have finished as a task (:func:`run_step`), keeping the manifest in its own process. A prediction step's parts
run ``nnUNetv2_predict_fast -num_parts N -part_id I`` as tasks (:func:`run_parts`), each into a hidden staging folder
that takes the part's final name only when complete, so a killed part is never taken for done; the process that runs
the step merges the parts. Dask is imported only when steps or parts run on it, so a run without either never pays
its start-up.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.pipeline.commands import run_logged, say

if TYPE_CHECKING:  # the graph imports torch (through the config's translator settings), which a part never needs
    from nnunetv2_uda.pipeline.graph import Attempt, Context, Step


@dataclass(frozen=True)
class StepRun:
    """What a step run as a task returns to the process that owns the manifest: the step's outputs, the worker
    that ran it and when (the worker's clock, seconds since the epoch)."""

    outputs: dict
    worker: str
    began: float
    ended: float


def run_step(step: Step, context: Context, attempt: Attempt) -> StepRun:
    """The Dask task of one step: its action, with the run's nnU-Net folder variables set in the worker (whose own
    environment may lack them). ``context`` is the owner's snapshot at submission, so the records of the upstream
    steps are there; the task never writes the manifest."""
    from distributed import get_worker

    os.environ.update({name: str(folder) for name, folder in context.folders.items()})
    began = time.time()
    outputs = step.action(context, attempt)
    return StepRun(outputs, get_worker().address, began, time.time())


@dataclass(frozen=True)
class Part:
    """One part of a prediction step, as a task carries it to a worker (paths as strings: workers may be elsewhere,
    on the same shared file system)."""

    index: int
    arguments: list[str]  # nnUNetv2_predict_fast's arguments but -o
    folder: str  # the part's final folder
    log_file: str
    environment: dict[str, str]  # the owner's nnU-Net folder variables, which a worker's own environment may lack


def predict_part(part: Part) -> None:
    """Predicts one part into its staging folder, renamed to ``part.folder`` when complete. A part found complete
    is kept: Dask runs a finished task again when its worker is lost before the result was collected."""
    done = Path(part.folder)
    if done.is_dir():
        say(f"part {part.index} is complete already (its task ran again after its Dask worker was lost); kept")
        return
    with folder_built_atomically(done) as staging:
        run_logged([*part.arguments, "-o", staging], Path(part.log_file), env={**os.environ, **part.environment})


def predict_part_task(part: Part) -> str:
    """The Dask task: :func:`predict_part`, returning the worker it ran on."""
    from distributed import get_worker

    predict_part(part)
    return get_worker().address


def in_dask_worker() -> bool:
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def wait_passively_on_shared_cores() -> None:
    """Commands started from now on (nnU-Net's training and prediction, several at once on this machine) let their
    OpenMP threads sleep while they wait, unless ``OMP_WAIT_POLICY`` is set already. libgomp's default spins, which
    steals the cores another process computes on: two 2-thread trainings of the small network at once on 2 cores took
    197 s against 24 s for one alone, and 28 s for both with passive waiting (docs/results.md, bench/shared_cores.py).
    Alone, passive waiting cost a fifth of an epoch in one measurement and nothing in another, so it is set only
    where commands run at once."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator:
    """A client of the cluster the tasks go to, closed on exit.

    Inside a Dask task (a step run on a worker) that is the task's own cluster, through ``worker_client`` (Dask's
    way for tasks that submit tasks: the waiting task leaves its worker's thread pool, so its tasks can run on that
    worker too, and no cluster is started inside a worker process). Elsewhere it is the scheduler at ``scheduler``,
    else a new ``LocalCluster`` with ``workers`` single-threaded worker processes (each task's work is a
    subprocess, whose threads then wait passively: :func:`wait_passively_on_shared_cores`).
    """
    from distributed import Client, LocalCluster, worker_client

    if in_dask_worker():
        with worker_client() as client:
            yield client
        return
    if scheduler is not None:
        try:
            client = Client(scheduler)
        except OSError as error:
            raise UserInputError(f"'scheduler': no Dask scheduler answers at {scheduler} ({error})") from None
        with client:
            yield client
        return
    wait_passively_on_shared_cores()  # before the workers start: they and their commands inherit it
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def run_parts(parts: list[Part], scheduler: str | None, step: str) -> None:
    """Runs ``parts`` as Dask tasks and waits for all of them (so none is left running when one fails), then raises
    the first failure."""
    from distributed import wait

    with dask_client(scheduler, len(parts)) as client:
        say(f"{step}: parts {[part.index for part in parts]} as tasks on the Dask scheduler {client.scheduler.address}")
        futures = [client.submit(predict_part_task, part, key=f"{step}-part_{part.index}-{uuid.uuid4().hex}")
                   for part in parts]
        wait(futures)
        for part, future in zip(parts, futures, strict=True):
            if future.status == "error":
                raise future.exception()
            say(f"{step}: part {part.index} predicted on Dask worker {future.result()}")

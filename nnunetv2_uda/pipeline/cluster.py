"""Prediction parts as tasks on Dask distributed: a ``LocalCluster`` of one worker per part on this machine, or the
workers of the scheduler at the config's ``scheduler`` address (e.g. started by ``dask-jobqueue`` on SLURM/PBS).

Each task runs one part's ``nnUNetv2_predict_fast -num_parts N -part_id I`` into a hidden staging folder that takes
the part's final name only when complete, so a killed part is never taken for done; the process that owns the step
merges the parts. Dask is imported only when a step has parts to run, so a run without parts never pays its start-up.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.pipeline.commands import run_logged, say


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
    """Predicts one part into its staging folder, renamed to ``part.folder`` when complete (a part completed
    meanwhile by another process is kept)."""
    done = Path(part.folder)
    try:
        with folder_built_atomically(done) as staging:
            run_logged([*part.arguments, "-o", staging], Path(part.log_file), env={**os.environ, **part.environment})
    except FileExistsError:
        if not done.is_dir():
            raise
        say(f"part {part.index} was completed meanwhile by another process; keeping that one")


def predict_part_task(part: Part) -> str:
    """The Dask task: :func:`predict_part`, returning the worker it ran on."""
    from distributed import get_worker

    predict_part(part)
    return get_worker().address


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator:
    """A client of the scheduler at ``scheduler``, else of a new ``LocalCluster`` with ``workers`` single-threaded
    worker processes (each task's work is a subprocess), closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler)
        except OSError as error:
            raise UserInputError(f"'scheduler': no Dask scheduler answers at {scheduler} ({error})") from None
        with client:
            yield client
        return
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

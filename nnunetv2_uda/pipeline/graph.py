"""The step graph: what a step is, what every step is given, and the order steps run in.

A step declares the settings and upstream steps its result depends on and the user folders it reads; the runner
(:mod:`nnunetv2_uda.pipeline.runner`) hashes them and skips a step the manifest shows finished under the same hash.
Steps pass results only through their manifest records (:meth:`Context.manifest_outputs`), so every step can be
rerun alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nnunetv2_uda.pipeline.config import PipelineConfig
from nnunetv2_uda.pipeline.datasets import check_datasets_owned, dataset_name, run_owner
from nnunetv2_uda.pipeline.manifest import Manifest


@dataclass(frozen=True)
class Attempt:
    """One run of one step: whether it resumes an attempt that stopped under the same input hash, and that hash
    (a prediction step names its parts folder by it)."""

    resume: bool
    input_hash: str


@dataclass(frozen=True)
class Context:
    """What every step needs: the config, nnU-Net's folders and facts about the inputs."""

    config: PipelineConfig
    folders: dict[str, Path]
    labels: dict[str, int]
    sequences: dict[str, str]
    manifest: Manifest
    relabel: dict[int, int] | None = None  # CT label id -> training id when 'organs' restricts them

    def manifest_outputs(self, step: str) -> dict:
        record = self.manifest.stages.get(step)
        if not record or not record.get("finished"):
            raise RuntimeError(f"step '{step}' has not finished (manifest {self.manifest.path})")
        return record["outputs"]

    @property
    def out(self) -> Path:
        return Path(self.config.output_folder)

    @property
    def raw(self) -> Path:
        return self.folders["nnUNet_raw"]

    @property
    def labeled_ct(self) -> Path:
        """The CT dataset with the labels every network trains on: the user's, or the source copy whose label maps
        keep only the chosen ``organs`` (written by the ``copy_ct`` step)."""
        if self.config.organs is None:
            return Path(self.config.ct_dataset)
        return self.raw / dataset_name(self.config.dataset_id_base, "source_ct")[1]

    @property
    def mri_images(self) -> Path:
        return Path(self.config.mri_dataset) / "imagesTr"

    def log_file(self, step: str) -> Path:
        return self.out / "logs" / f"{step}.log"

    @property
    def owner(self) -> dict[str, str]:
        """This run, as the datasets it creates record it (:data:`nnunetv2_uda.pipeline.datasets.OWNER_KEY`)."""
        return run_owner(self.out, self.manifest.run_id)

    def dataset(self, role: str) -> tuple[int, str]:
        """The id and name of the run's dataset ``role``, checked again (as before the run) to be free or this
        run's own."""
        dataset_id, name = dataset_name(self.config.dataset_id_base, role)
        check_datasets_owned(self.folders, [(dataset_id, name)], self.owner, self.config.dataset_id_base)
        return dataset_id, name


@dataclass
class Step:
    """One resumable unit of work: ``action(context, attempt) -> outputs`` (JSON-able dict of paths and facts)."""

    name: str
    description: str
    action: Callable[[Context, Attempt], dict]
    settings: dict = field(default_factory=dict)
    depends: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # config keys of user input folders whose content the result depends on
    datasets: tuple[str, ...] = ()  # roles (DATASET_ROLES) of the nnU-Net datasets it writes


def topological(steps: list[Step]) -> list[Step]:
    """The steps in running order: each after the steps it depends on, otherwise in the order given."""
    by_name = {s.name: s for s in steps}
    ordered: list[Step] = []
    seen: set[str] = set()

    def visit(step: Step) -> None:
        if step.name in seen:
            return
        seen.add(step.name)
        for dependency in step.depends:
            visit(by_name[dependency])
        ordered.append(step)

    for step in steps:
        visit(step)
    return ordered

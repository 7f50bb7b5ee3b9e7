"""The paper's stages as steps, one module per stage, and the step graph the ablation rows need.

Rows share the steps they have in common. Each step writes only into the pipeline's output folder and into nnU-Net's
folders under the ids of the datasets this run owns (:mod:`nnunetv2_uda.pipeline.datasets`); every folder it makes is
built beside its final name and renamed when complete (:func:`nnunetv2_uda.atomic_files.folder_built_atomically`).
"""

from __future__ import annotations

from nnunetv2_uda.pipeline.config import PipelineConfig
from nnunetv2_uda.pipeline.graph import Step, topological
from nnunetv2_uda.pipeline.rows import ROWS, without_mdm
from nnunetv2_uda.pipeline.steps.evaluation import evaluate_step
from nnunetv2_uda.pipeline.steps.mdm import mdm_name, mdm_step
from nnunetv2_uda.pipeline.steps.self_training import plf_name, plf_steps
from nnunetv2_uda.pipeline.steps.source import copy_ct_step, plan_step, source_steps
from nnunetv2_uda.pipeline.steps.translation import translator_steps


def row_plan(config: PipelineConfig, sequences: dict[str, str]) -> tuple[list[str], list[str]]:
    """The rows to run and notes for the user (MDM needs at least two sequences to match)."""
    rows, notes = [], []
    single = len(set(sequences.values())) < 2
    for row in (ROWS[name] for name in config.rows):
        if single and row.mdm:
            plain = without_mdm(row)
            if plain is None:
                notes.append(f"row '{row.name}' left out: the MRI dataset has one sequence "
                             f"({set(sequences.values())}), so multi-domain matching has nothing to match")
                continue
            notes.append(f"row '{row.name}' runs as '{plain.name}': one MRI sequence, so MDM is left out")
            row = plain
        if row.name not in rows:
            rows.append(row.name)
    return rows, notes


def build_steps(config: PipelineConfig, rows: list[str]) -> tuple[list[Step], dict[str, str]]:
    """The steps the rows (names from :func:`row_plan`) need, in running order, and each row's scored step."""
    steps: dict[str, Step] = {}

    def add(*new: Step) -> None:
        for step in new:
            steps.setdefault(step.name, step)

    scored: dict[str, str] = {}
    for row in (ROWS[name] for name in rows):
        if row.translator is not None:
            if config.source_warm_start:
                add(copy_ct_step(config), plan_step(config), source_steps(config, "ct")[0])
            add(*translator_steps(config, row.translator))
        add(copy_ct_step(config), plan_step(config), *source_steps(config, row.source))
        scored[row.name] = f"pseudolabel_{row.source}"
        if row.mdm:
            add(mdm_step(config, row.source))
            scored[row.name] = mdm_name(row.source)
        if row.rounds:
            if config.final.ct_source == "fake_mri":  # the final network's CT cases come translated
                add(*translator_steps(config, "asit"))
            for round_number in range(1, row.rounds + 1):
                add(*plf_steps(config, row, round_number))
            last = plf_name(row, row.rounds)
            predicts = config.validation_labels is not None or config.test_images is not None
            scored[row.name] = f"predict_{last}" if predicts else f"filter_{last}"
    ordered = topological(list(steps.values()))
    if config.validation_labels is not None:  # every row's scored step predicted the validation MRI
        ordered += [evaluate_step(row, scored[row], "validation") for row in rows]
    if config.test_labels is not None and config.test_images is not None:  # only final networks predict them
        ordered += [evaluate_step(row, scored[row], "test") for row in rows if ROWS[row].rounds]
    return ordered, scored

"""The evaluation step: a row's scored predictions against the validation or test labels."""

from __future__ import annotations

from functools import partial

from nnunetv2_uda.atomic_files import folder_built_atomically
from nnunetv2_uda.pipeline.commands import run_logged
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step

LABEL_KEYS = {"validation": "validation_labels", "test": "test_labels"}  # kind -> config key of its labels


def evaluate(context: Context, attempt: Attempt, row: str, scored_step: str, kind: str) -> dict:
    config = context.config
    produced = context.manifest_outputs(scored_step)
    predictions = produced.get(kind) or produced["labels"]
    output = context.out / "evaluation" / (row if kind == "validation" else f"{row}_test")
    with folder_built_atomically(output, replace=True) as staging:
        run_logged(["nnUNetv2_uda_evaluate", predictions, getattr(config, LABEL_KEYS[kind]), "-o", staging,
                    "-np", config.num_processes], context.log_file(f"evaluate_{row}_{kind}"))
    return {"summary": str(output / "summary.json"), "folder": str(output), "predictions": str(predictions)}


def evaluate_step(row: str, scored_step: str, kind: str) -> Step:
    """``evaluate_<row>`` (validation) or ``evaluate_<row>_test``."""
    name = f"evaluate_{row}" + ("" if kind == "validation" else "_test")
    return Step(name, f"score row '{row}' on the {kind} labels",
                partial(evaluate, row=row, scored_step=scored_step, kind=kind), {"kind": kind},
                depends=(scored_step,), inputs=(LABEL_KEYS[kind],))

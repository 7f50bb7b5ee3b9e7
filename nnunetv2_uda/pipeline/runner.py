"""Runs the steps, skipping those the manifest shows finished with the same inputs and settings: one after the other
in this process, or with ``parallel_steps`` above 1 as Dask tasks, each once the steps it depends on are done.

A step's input hash covers its own settings, the content fingerprint of the user folders it reads and the hashes of
the steps it depends on, so a changed setting reruns that step and, through the chain, every step after it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from nnunetv2_uda.atomic_files import write_json_atomically
from nnunetv2_uda.output_folders import OutputFolderError, check_output_folder
from nnunetv2_uda.pipeline.commands import say
from nnunetv2_uda.pipeline.config import INPUT_FOLDER_KEYS, PipelineConfig, check_inputs
from nnunetv2_uda.pipeline.datasets import (
    check_datasets_owned,
    check_label_names,
    dataset_name,
    describe_ids,
    free_dataset_id_base,
    mri_sequences,
    nnunet_folders,
    reserve_dataset_ids,
    run_owner,
    select_organs,
)
from nnunetv2_uda.pipeline.graph import Attempt, Context, Step
from nnunetv2_uda.pipeline.manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest, folder_fingerprint, hash_json
from nnunetv2_uda.pipeline.steps import build_steps, row_plan

RUN_FILE = "run.json"
SKIP_REASON = "finished earlier with the same inputs and settings"


@dataclass
class RunResult:
    """What happened to each step in this run: 'ran' or 'skipped'."""

    rows: list[str]
    statuses: dict[str, str] = field(default_factory=dict)
    report: Path | None = None


def step_inputs(step: Step, context: Context, fingerprints: dict[str, str]) -> dict[str, str]:
    """Content fingerprints of the user folders the step reads, by config key (each folder read once per run)."""
    inputs = {}
    for key in step.inputs:
        folder = getattr(context.config, key)
        if folder is not None:
            if key not in fingerprints:
                fingerprints[key] = folder_fingerprint(Path(folder))
            inputs[key] = fingerprints[key]
    return inputs


def step_hash(step: Step, context: Context, fingerprints: dict[str, str],
              upstream_hashes: dict[str, str]) -> tuple[str, dict, dict]:
    """The step's input hash, with the settings and input fingerprints it covers (recorded in the manifest)."""
    settings = json.loads(json.dumps(step.settings, default=str))
    inputs = step_inputs(step, context, fingerprints)
    upstream = {name: upstream_hashes[name] for name in step.depends}
    return hash_json({"settings": settings, "inputs": inputs, "upstream": upstream}), settings, inputs


def rerun_reason(step: Step, context: Context, input_hash: str, settings: dict, inputs: dict) -> str:
    record = context.manifest.stages.get(step.name)
    if record is None:
        return "not run before"
    schema = context.manifest.schema_version(step.name)
    if schema != SCHEMA_VERSION:
        return (f"recorded by another version of nnunetv2-uda (record schema {schema}, now {SCHEMA_VERSION}): "
                f"rerunning it and the steps after it")
    if record["input_hash"] == input_hash:
        return "resuming (an earlier run stopped or failed during this step)"
    changed = context.manifest.changed_settings(step.name, settings)
    if changed:
        return f"settings changed ({', '.join(changed)}): rerunning it and the steps after it"
    changed = context.manifest.changed_inputs(step.name, inputs)
    if changed:
        return f"the content of {', '.join(changed)} changed: rerunning it and the steps after it"
    return "its inputs or an earlier step changed: rerunning"


@dataclass
class PlannedStep:
    """What a run does with one step: its input hash and, unless it finished earlier with that hash, why it runs."""

    step: Step
    input_hash: str
    settings: dict
    inputs: dict
    reason: str | None  # None: skipped

    @property
    def status(self) -> str:
        return f"skip ({SKIP_REASON})" if self.reason is None else f"run: {self.reason}"


def plan_run(context: Context, steps: list[Step]) -> list[PlannedStep]:
    """Decides every step before any runs (a step's hash depends on settings, inputs and upstream hashes, never on
    results), so ``nnUNetv2_uda_run --check`` shows exactly what the run does."""
    fingerprints: dict[str, str] = {}
    hashes: dict[str, str] = {}
    planned = []
    for step in steps:
        input_hash, settings, inputs = step_hash(step, context, fingerprints, hashes)
        hashes[step.name] = input_hash
        finished = context.manifest.is_finished(step.name, input_hash)
        reason = None if finished else rerun_reason(step, context, input_hash, settings, inputs)
        planned.append(PlannedStep(step, input_hash, settings, inputs, reason))
    return planned


def check_output_folder_is_the_runs(config: PipelineConfig) -> None:
    """The output folder is new, empty or a run's own (it holds manifest.json), and neither is nor holds nor lies
    inside an input folder: the pipeline replaces folders inside it, which must never be the user's."""
    output = Path(config.output_folder)
    try:
        check_output_folder(output, [getattr(config, key) for key in INPUT_FOLDER_KEYS], overwrite=True)
    except OutputFolderError as error:
        raise OutputFolderError(f"'output_folder': {error}") from None
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST_NAME).is_file():
        raise OutputFolderError(f"'output_folder': {output} is not empty and holds no {MANIFEST_NAME}, so it is not "
                                f"a pipeline run's folder (the run would write into it); choose a new or empty folder")


def dataset_id_base(config: PipelineConfig, manifest: Manifest, folders: dict[str, Path]) -> tuple[int, str]:
    """The base of the run's dataset ids and where it comes from: the config's ``dataset_id_base``, else the one
    recorded in manifest.json when the run first started (so reruns keep their datasets and step hashes), else the
    first free range."""
    if config.dataset_id_base is not None:
        return config.dataset_id_base, "'dataset_id_base'"
    if manifest.dataset_id_base is not None:
        return manifest.dataset_id_base, f"recorded in {MANIFEST_NAME} when the run first started"
    owner = run_owner(Path(config.output_folder), manifest.run_id)
    return free_dataset_id_base(folders, owner), ("'dataset_id_base' is null: the first free range, recorded in "
                                                  "manifest.json when the run starts")


def prepare(config: PipelineConfig) -> tuple[Context, list, dict, list[str], list[str]]:
    """Checks everything that can be checked before work starts and builds the step list; creates nothing but the
    output folder, after every check passed. The context's config has the dataset id base resolved
    (:func:`dataset_id_base`); the notes say which ids the run uses."""
    folders = nnunet_folders()
    check_inputs(config)
    check_output_folder_is_the_runs(config)
    labels, relabel = select_organs(check_label_names(Path(config.ct_dataset), Path(config.mri_dataset)),
                                    config.organs)
    sequences = mri_sequences(Path(config.mri_dataset) / "imagesTr", config.mri_default_sequence)
    manifest = Manifest(Path(config.output_folder), roots=folders)
    base, source = dataset_id_base(config, manifest, folders)
    config = dataclasses.replace(config, dataset_id_base=base)  # the steps record the base in their settings
    manifest.dataset_id_base = base
    rows, notes = row_plan(config, sequences)
    steps, scored = build_steps(config, rows)
    roles = dict.fromkeys(role for step in steps for role in step.datasets)
    datasets = [dataset_name(base, role) for role in roles]
    check_datasets_owned(folders, datasets, run_owner(Path(config.output_folder), manifest.run_id), base)
    notes.append(f"nnU-Net dataset ids {describe_ids([dataset_id for dataset_id, _ in datasets])} (base {base}: "
                 f"{source})")
    Path(config.output_folder).mkdir(parents=True, exist_ok=True)
    context = Context(config, folders, labels, sequences, manifest, relabel=relabel)
    return context, steps, scored, rows, notes


class StepLog:
    """The lines a run prints about its steps (``[i/n] step: why: what``, then ``[i/n] step: finished in ...``) and
    the manifest records around each step's action, which only the process that runs the pipeline writes."""

    def __init__(self, context: Context, planned: list[PlannedStep], result: RunResult):
        self.context, self.result = context, result
        self.prefixes = {p.step.name: f"[{index}/{len(planned)}] {p.step.name}" for index, p in enumerate(planned, 1)}

    def skip(self, planned: PlannedStep) -> None:
        say(f"{self.prefixes[planned.step.name]}: skipped ({SKIP_REASON})")
        self.result.statuses[planned.step.name] = "skipped"

    def start(self, planned: PlannedStep) -> Attempt:
        """Says why the step runs and records it started (so a kill from here on reruns it with resume)."""
        step = planned.step
        say(f"{self.prefixes[step.name]}: {planned.reason}: {step.description}")
        resume = self.context.manifest.is_current(step.name, planned.input_hash)
        self.context.manifest.mark_started(step.name, planned.input_hash, planned.settings, planned.inputs)
        return Attempt(resume, planned.input_hash)

    def finish(self, step: Step, outputs: dict, wall_time_s: float, where: str = "") -> None:
        self.context.manifest.mark_finished(step.name, outputs, wall_time_s)
        say(f"{self.prefixes[step.name]}: finished in {wall_time_s:.1f} s{where}")
        self.result.statuses[step.name] = "ran"


def run_in_process(context: Context, planned: list[PlannedStep], log: StepLog) -> None:
    """One step after the other, in this process (``parallel_steps: 1``)."""
    for step_plan in planned:
        if step_plan.reason is None:
            log.skip(step_plan)
            continue
        attempt = log.start(step_plan)
        begin = time.time()
        outputs = step_plan.step.action(context, attempt)
        log.finish(step_plan.step, outputs, time.time() - begin)


def run_on_dask(context: Context, planned: list[PlannedStep], log: StepLog) -> dict[str, dict]:
    """Every step that runs as a Dask task (:func:`nnunetv2_uda.pipeline.cluster.run_step`), submitted as soon as
    the steps it depends on have finished or were skipped, so independent steps (the rows' branches) run at once on
    ``parallel_steps`` workers of a ``LocalCluster`` or on the workers of ``scheduler``.

    This process keeps the manifest: a step is recorded started when submitted and finished when its task returns
    its outputs, so a step killed mid-task reruns with resume next time. After a failure nothing more is submitted;
    the running tasks are waited for, those that finish are recorded, then the first failure is raised. Returns
    where and when (the worker's clock) each step ran.
    """
    from distributed import as_completed

    from nnunetv2_uda.pipeline.cluster import dask_client, run_step

    done = set()
    waiting = []
    for step_plan in planned:
        if step_plan.reason is None:
            log.skip(step_plan)
            done.add(step_plan.step.name)
        else:
            waiting.append(step_plan)
    tasks: dict[str, dict] = {}
    with dask_client(context.config.scheduler, context.config.parallel_steps) as client:
        say(f"steps as tasks on the Dask scheduler {client.scheduler.address}")
        running = as_completed()
        submitted = {}

        def submit_ready() -> None:
            for step_plan in [p for p in waiting if done.issuperset(p.step.depends)]:
                waiting.remove(step_plan)
                attempt = log.start(step_plan)
                snapshot = dataclasses.replace(context, manifest=copy.deepcopy(context.manifest))
                future = client.submit(run_step, step_plan.step, snapshot, attempt,
                                       key=f"{step_plan.step.name}-{uuid.uuid4().hex}")
                submitted[future.key] = step_plan.step
                running.add(future)

        submit_ready()
        failed = None
        for future in running:
            step = submitted.pop(future.key)
            if future.status == "error":
                say(f"{log.prefixes[step.name]}: failed ({future.exception()})")
                failed = failed or future
                continue
            run = future.result()
            log.finish(step, run.outputs, run.ended - run.began, f" on Dask worker {run.worker}")
            tasks[step.name] = {"worker": run.worker, "began": run.began, "ended": run.ended}
            done.add(step.name)
            if failed is None:
                submit_ready()
        if failed is not None:
            failed.result()  # raises the task's error
    return tasks


def run_pipeline(config: PipelineConfig) -> RunResult:
    context, steps, scored, rows, notes = prepare(config)
    for note in notes:
        say(note)
    say(f"rows: {', '.join(rows)}; {len(steps)} steps; output folder {context.out}")
    result = RunResult(rows)
    context.manifest.save()  # the run's id and dataset id base, before any dataset exists
    reserve_dataset_ids(context.folders, context.config.dataset_id_base, context.owner)
    started = time.time()
    planned = plan_run(context, steps)
    log = StepLog(context, planned, result)
    tasks: dict[str, dict] = {}
    if config.parallel_steps == 1:
        run_in_process(context, planned, log)
    else:
        tasks = run_on_dask(context, planned, log)
    run_info = {"rows": rows, "notes": notes, "sequences": context.sequences, "scored_steps": scored,
                "steps": [s.name for s in steps],
                "descriptions": {s.name: s.description for s in steps}, "statuses": result.statuses,
                "config": context.config.to_dict(), "wall_time_this_run_s": round(time.time() - started, 1)}
    if tasks:
        run_info["dask_tasks"] = tasks
    write_json_atomically(run_info, context.out / RUN_FILE)
    from nnunetv2_uda.pipeline.report import write_report

    result.report = write_report(context.out, context.manifest, run_info)
    say(f"report: {result.report}")
    return result

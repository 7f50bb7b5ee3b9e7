"""``report.md``: what the pipeline made, how good it is where labels were given, and how long each step took.

Figures are copied next to the report (``figures/``) so the folder can be moved or linked as a whole.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from nnunetv2_uda.atomic_files import copy_atomically, write_text_atomically
from nnunetv2_uda.evaluation.evaluate import METRICS_CSV, average_statistics
from nnunetv2_uda.evaluation.tables import AVERAGE_KEY, METRICS, format_table5, format_table7, render_table
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.pipeline.rows import ROW_TITLES

REPORT_NAME = "report.md"
FIGURES = "figures"


def _figure(out: Path, source: str | Path, name: str) -> str | None:
    source = Path(source)
    if not source.is_file():
        return None
    target = out / FIGURES / name
    target.parent.mkdir(exist_ok=True)
    copy_atomically(source, target)
    return f"{FIGURES}/{name}"


def table7(summaries: dict[str, dict], trained: list[str] | None = None) -> str:
    """Table 7 form (markdown) of the rows' evaluations; with ``trained`` (the config's 'organs') also their mean."""
    return format_table7({ROW_TITLES.get(row, row): content["summary"] for row, content in summaries.items()},
                         trained=trained or (), markdown=True)


def read_summaries(manifest: Manifest, rows: list[str], suffix: str = "") -> dict[str, dict]:
    summaries = {}
    for row in rows:
        record = manifest.stages.get(f"evaluate_{row}{suffix}")
        if record and record.get("finished"):
            summaries[row] = read_json_object(record["outputs"]["summary"],
                                              "not the summary.json nnUNetv2_uda_evaluate writes")
    return summaries


def per_sequence_table(manifest: Manifest, rows: list[str], sequences: dict[str, str],
                       trained: list[str] | None = None) -> str | None:
    """Table 7 form with the MRI sequences as columns: each scored row's average (the mean over a case's organs,
    averaged over cases, as in Table 7's Average) per sequence, from the rows' per-case metrics, over the
    ``trained`` organs where the config names them (the others are misses by design); None with fewer than two
    sequences. MDM exists because rows fare differently per sequence."""
    counts = Counter(sequences.values())
    if len(counts) < 2:
        return None
    columns = {tag: f"{tag} ({count} case{'' if count == 1 else 's'})" for tag, count in sorted(counts.items())}
    summaries = {}
    for row in rows:
        record = manifest.stages.get(f"evaluate_{row}")
        if not (record and record.get("finished")):
            continue
        with open(Path(record["outputs"]["folder"]) / METRICS_CSV, newline="") as handle:
            metrics = [{**line, **{metric: float(line[metric]) for metric in METRICS}}
                       for line in csv.DictReader(handle) if not trained or line["organ"] in trained]
        summary = {column: average_statistics([m for m in metrics if sequences.get(m["case"]) == tag])
                   for tag, column in columns.items()}
        summaries[ROW_TITLES.get(row, row)] = {**summary, AVERAGE_KEY: average_statistics(metrics)}
    return format_table7(summaries, organs=list(columns.values()), markdown=True) if summaries else None


def _figures(out: Path, manifest: Manifest, steps: list[str], kind: str) -> list[tuple[str, str]]:
    """(step, link) for the figures of one kind (an outputs key: 'translation_figures', 'uncertainty_figures' or
    'mdm_figures') that finished steps recorded, copied next to the report."""
    figures = []
    for step in steps:
        record = manifest.stages.get(step, {})
        for index, figure in enumerate(record["outputs"].get(kind, []) if record.get("finished") else []):
            link = _figure(out, figure, f"{step}_{index}_{Path(figure).name}")
            if link:
                figures.append((step, link))
    return figures


def write_report(out: Path, manifest: Manifest, run_info: dict) -> Path:
    out = Path(out)
    rows = run_info["rows"]
    lines = ["# nnunetv2-uda pipeline report", ""]
    config = run_info["config"]
    lines += [f"- CT dataset: `{config['ct_dataset']}`", f"- MRI dataset: `{config['mri_dataset']}`",
              f"- rows: {', '.join(ROW_TITLES.get(r, r) for r in rows)}",
              f"- nnU-Net configuration `{config['configuration']}`, device `{config['device']}`, "
              f"target spacing {config['target_spacing'] or 'planner default'}"]
    lines += [f"- note: {note}" for note in run_info["notes"]]
    lines.append("")

    translation = _figures(out, manifest, run_info["steps"], "translation_figures")
    if translation:
        lines += ["## Translation (CT -> fake MRI)", ""]
        lines += [f"![{step}]({link})" for step, link in translation] + [""]
    histograms = _figures(out, manifest, run_info["steps"], "uncertainty_figures")
    if histograms:
        lines += ["## Snapshot uncertainty and its cut", ""]
        for step, link in histograms:
            kept = manifest.stages[step]["outputs"].get("kept_cases", [])
            lines += [f"{step}: {len(kept)} case(s) kept.", "", f"![{step}]({link})", ""]

    matching = _figures(out, manifest, run_info["steps"], "mdm_figures")
    if matching:
        lines += ["## Multi-domain matching (own pseudo-label against the matched, registered one)", ""]
        lines += [f"![{step}]({link})" for step, link in matching] + [""]

    validation = read_summaries(manifest, rows)
    if validation:
        lines += ["## Per-row scores on the validation labels (Table 7 form, DSC / NSD in %)", "",
                  "Each row is scored on its own MRI segmentations: the pseudo-labels of its segmentation network, "
                  "after MDM where the row has it, and the final network's predictions for the PLF rows. The "
                  "validation labels are used for these scores only.", "", table7(validation, config['organs']), ""]
        by_sequence = per_sequence_table(manifest, rows, run_info["sequences"], config["organs"])
        if by_sequence:
            over = "the trained organs" if config["organs"] else "organs"
            lines += [f"### Per MRI sequence (mean over {over} and cases, DSC / NSD in %)", "", by_sequence, ""]
        final_row = rows[-1]
        if final_row in validation:
            lines += [f"## Final per-organ scores, {ROW_TITLES.get(final_row, final_row)} (Table 5 form)", "",
                      format_table5(validation[final_row]["summary"], markdown=True), ""]
            boxplot = _figure(out, Path(manifest.stages[f"evaluate_{final_row}"]["outputs"]["folder"])
                              / "metrics_boxplot.png", f"evaluate_{final_row}_boxplot.png")
            if boxplot:
                lines += [f"![scores]({boxplot})", ""]
    test = read_summaries(manifest, rows, "_test")
    if test:
        lines += ["## Test set scores (Table 5 form)", ""]
        for row, content in test.items():
            lines += [f"### {ROW_TITLES.get(row, row)}", "", format_table5(content["summary"], markdown=True), ""]

    lines += ["## Steps and wall times", ""]
    table = []
    total = 0.0
    for step in run_info["steps"]:
        record = manifest.stages.get(step, {})
        seconds = record.get("wall_time_s")
        total += seconds or 0.0
        table.append([step, run_info["descriptions"][step], run_info["statuses"].get(step, "-"),
                      f"{seconds:.1f}" if seconds is not None else "-"])
    table.append(["total", "", "", f"{total:.1f}"])
    lines += [render_table(["Step", "What", "This run", "Wall time (s)"], table, markdown=True), "",
              "Outputs of every step (nnU-Net datasets, models, pseudo-labels) are listed in `manifest.json`; "
              "logs are in `logs/`.", ""]
    lines += final_network_section(manifest, run_info)
    path = out / REPORT_NAME
    write_text_atomically("\n".join(lines), path)
    return path


def final_network(manifest: Manifest, run_info: dict) -> tuple[str, dict] | None:
    """The step and outputs of the last network the run trained that predicts on its own: the final network of the
    last PLF row (a self-training network, which only makes snapshots, is not one). None before any is finished."""
    found = None
    for step in run_info["steps"]:
        record = manifest.stages.get(step, {})
        outputs = record.get("outputs", {}) if record.get("finished") else {}
        if "checkpoint" in outputs and "trainer" in outputs and "snapshots" not in outputs:
            found = (step, outputs)
    return found


def predict_command(network: dict, device: str, largest_component: bool) -> list[str]:
    """The command lines that segment a folder of new MRI as this run's final network did."""
    commands = [f"nnUNetv2_predict_fast -i NEW_MRI_FOLDER -o SEGMENTATION_FOLDER -d {network['dataset_id']} "
                f"-tr {network['trainer']} -p {network['plans']} -c {network['configuration']} -f {network['fold']} "
                f"-device {device}"]
    if largest_component:
        commands.append("nnUNetv2_uda_largest_component SEGMENTATION_FOLDER SEGMENTATION_FOLDER_largest_component")
    return commands


def final_network_section(manifest: Manifest, run_info: dict) -> list[str]:
    found = final_network(manifest, run_info)
    if found is None:
        return []
    step, network = found
    config = run_info["config"]
    lines = ["## The final network and how to use it", "",
             f"Trained by step `{step}`; nnU-Net names it:", "",
             render_table(["dataset", "trainer", "plans", "configuration", "fold"],
                          [[network["dataset"], network["trainer"], network["plans"], network["configuration"],
                            network["fold"]]], markdown=True), "",
             f"Its checkpoint: `{network['checkpoint']}`. Segment new MRI (a folder of `<case>_0000.nii.gz`, one "
             f"channel, any sequence) with the same `nnUNet_results`"
             + (", then keep each organ's largest component as this run did" if config["largest_component"] else "")
             + ":", "", "```bash", *predict_command(network, config["device"], config["largest_component"]), "```",
             "", "Share it as one file with `nnUNetv2_export_model_to_zip -d {} -o model.zip -c {} -tr {} -p {} -f {}` "
             "(install elsewhere with `nnUNetv2_install_pretrained_model_from_zip model.zip`; nnunetv2-uda must be "
             "installed there too, for the trainer class).".format(network["dataset"], network["configuration"],
                                                                  network["trainer"], network["plans"],
                                                                  network["fold"]), ""]
    tested = [(step, record["outputs"]["test"]) for step, record in manifest.stages.items()
              if step in run_info["steps"] and record.get("finished") and "test" in record.get("outputs", {})]
    if tested:
        lines += ["Predictions of `test_images`:", ""]
        lines += [f"- `{step}`: `{folder}`" for step, folder in tested] + [""]
    return lines

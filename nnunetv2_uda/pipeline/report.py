"""``report.md``: what the pipeline made, how good it is where labels were given, and how long each step took.

Figures are copied next to the report (``figures/``) so the folder can be moved or linked as a whole.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from nnunetv2_uda.evaluation.tables import AVERAGE_KEY, format_table5, render_table
from nnunetv2_uda.pipeline.config import ROW_TITLES
from nnunetv2_uda.pipeline.manifest import Manifest, atomic_write_text

REPORT_NAME = "report.md"
FIGURES = "figures"


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _figure(out: Path, source: str | Path, name: str) -> str | None:
    source = Path(source)
    if not source.is_file():
        return None
    target = out / FIGURES / name
    target.parent.mkdir(exist_ok=True)
    shutil.copy2(source, target)
    return f"{FIGURES}/{name}"


def table7(summaries: dict[str, dict]) -> str:
    """Table 7 form: one row per method, "DSC / NSD" (%) per organ and their average."""
    organs = [o for o in next(iter(summaries.values()))["summary"] if o != AVERAGE_KEY]
    rows = []
    for row, content in summaries.items():
        summary = content["summary"]
        cells = [" / ".join(_percent(summary.get(key, {}).get(m, {}).get("mean", float("nan"))) for m in ("DSC", "NSD"))
                 for key in [*organs, AVERAGE_KEY]]
        rows.append([ROW_TITLES.get(row, row)] + cells)
    return render_table(["Method", *organs, "Average"], rows, markdown=True)


def read_summaries(manifest: Manifest, rows: list[str], suffix: str = "") -> dict[str, dict]:
    summaries = {}
    for row in rows:
        record = manifest.stages.get(f"evaluate_{row}{suffix}")
        if record and record.get("finished"):
            summaries[row] = json.loads(Path(record["outputs"]["summary"]).read_text())
    return summaries


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

    figures = []
    for step in run_info["steps"]:
        record = manifest.stages.get(step, {})
        for index, figure in enumerate(record.get("outputs", {}).get("figures", []) if record.get("finished") else []):
            link = _figure(out, figure, f"{step}_{index}_{Path(figure).name}")
            if link:
                figures.append((step, link))
    translation = [(s, f) for s, f in figures if s.startswith("translate_")]
    if translation:
        lines += ["## Translation (CT -> fake MRI)", ""]
        lines += [f"![{step}]({link})" for step, link in translation] + [""]
    histograms = [(s, f) for s, f in figures if s.startswith("filter_")]
    if histograms:
        lines += ["## Snapshot uncertainty and its cut", ""]
        for step, link in histograms:
            kept = manifest.stages[step]["outputs"].get("kept_cases", [])
            lines += [f"{step}: {len(kept)} case(s) kept.", "", f"![{step}]({link})", ""]

    validation = read_summaries(manifest, rows)
    if validation:
        lines += ["## Per-row scores on the validation labels (Table 7 form, DSC / NSD in %)", "",
                  "Each row is scored on its own MRI segmentations: the pseudo-labels of its segmentation network, "
                  "after MDM where the row has it, and the final network's predictions for the PLF rows. The "
                  "validation labels are used for these scores only.", "", table7(validation), ""]
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
    path = out / REPORT_NAME
    atomic_write_text(path, "\n".join(lines))
    return path

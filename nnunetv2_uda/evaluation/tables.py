"""Summary statistics and the paper's table forms, as aligned text for the terminal or markdown for reports; every
score table the package and the bench print is made here.

Table 5 form: mean ± std of DSC and NSD per organ and their average. Table 7 form: one row per method, mean DSC / NSD
per organ. Tables 8/9 form: 25th, 50th and 75th percentile with mean ± std, used for accuracy and for efficiency
(time, memory) alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

AVERAGE_KEY = "mean"
METRICS = ("DSC", "NSD")


def summary_statistics(values: Iterable[float]) -> dict[str, float]:
    """mean, std (population, ddof 0), p25, p50, p75 of ``values``; NaN for no values."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        return {key: float("nan") for key in ("mean", "std", "p25", "p50", "p75")}
    p25, p50, p75 = np.percentile(array, [25, 50, 75])
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "p25": float(p25),
        "p50": float(p50),
        "p75": float(p75),
    }


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """Left-aligned first column, right-aligned others; markdown pipes when ``markdown``."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *others = cells
        return "  ".join([first.ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(others, widths[1:], strict=True)])

    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(row) for row in rows])


def format_mean_std(stats: Mapping[str, float], scale: float = 1.0, digits: int = 2) -> str:
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def _row_label(key: str) -> str:
    return "Average" if key == AVERAGE_KEY else key


def format_table5(summary: Mapping[str, Mapping[str, Mapping[str, float]]], markdown: bool = False) -> str:
    """Table 5 form: one row per organ and the average, DSC (%) and NSD (%) as mean ± std."""
    rows = [
        [_row_label(key)] + [format_mean_std(entry[m], scale=100) for m in METRICS] for key, entry in summary.items()
    ]
    return render_table(["Organ", "DSC (%)", "NSD (%)"], rows, markdown)


def format_table7(summaries: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]] | None],
                  organs: Sequence[str] | None = None, trained: Sequence[str] = (), markdown: bool = False,
                  digits: int = 2) -> str:
    """Table 7 form: one row per method (``summaries``: its title -> its summary, None where it was not scored),
    "DSC / NSD" mean (%) per organ (``organs``; default: those of the first summary) and their average; with
    ``trained`` (organs the networks learned), also the mean over those organs, since the others are scored but were
    never learned."""
    scored = [summary for summary in summaries.values() if summary is not None]
    if organs is None:
        organs = [key for key in (scored[0] if scored else {}) if key != AVERAGE_KEY]
    trained = [organ for organ in trained if organ in organs]

    def cell(means: list[Mapping[str, float]]) -> str:
        values = [sum(mean.get(metric, math.nan) for mean in means) / len(means) for metric in METRICS]
        return " / ".join("n/a" if math.isnan(value) else f"{100 * value:.{digits}f}" for value in values)

    rows = []
    for title, summary in summaries.items():
        means = {key: {metric: stats.get("mean", math.nan) for metric, stats in scores.items()}
                 for key, scores in (summary or {}).items()}
        cells = [cell([means.get(key, {})]) for key in [*organs, AVERAGE_KEY]]
        if trained:
            cells.append(cell([means.get(organ, {}) for organ in trained]))
        rows.append([title, *cells])
    return render_table(["Method", *organs, "Average", *(["Trained organs"] if trained else [])], rows, markdown)


def format_percentile_table(
    statistics: Mapping[str, Mapping[str, float]], scale: float = 1.0, digits: int = 2, markdown: bool = False
) -> str:
    """Tables 8/9 form: one row per quantity, its 25th/50th/75th percentile and mean ± std."""
    rows = [
        [label]
        + [f"{stats[key] * scale:.{digits}f}" for key in ("p25", "p50", "p75")]
        + [format_mean_std(stats, scale, digits)]
        for label, stats in statistics.items()
    ]
    return render_table(["", "25%", "50%", "75%", "Mean ± Std"], rows, markdown)


def format_accuracy_percentiles(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], markdown: bool = False
) -> str:
    """Tables 8/9 form of DSC (%) and NSD (%): the average first, then every organ."""
    keys = [AVERAGE_KEY] + [key for key in summary if key != AVERAGE_KEY]
    statistics = {f"{metric} {_row_label(key)}": summary[key][metric] for metric in METRICS for key in keys}
    return format_percentile_table(statistics, scale=100, markdown=markdown)

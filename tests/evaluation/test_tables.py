"""Summary statistics and the Table 5 / Table 7 / Tables 8-9 forms."""

import numpy as np
import pytest

from nnunetv2_uda.evaluation.tables import (
    format_accuracy_percentiles,
    format_percentile_table,
    format_table5,
    format_table7,
    summary_statistics,
)


def test_summary_statistics_match_numpy():
    values = [0.1, 0.5, 0.7, 0.9, 0.95]
    stats = summary_statistics(values)
    assert stats["mean"] == pytest.approx(np.mean(values)) and stats["std"] == pytest.approx(np.std(values))
    assert [stats["p25"], stats["p50"], stats["p75"]] == pytest.approx(np.percentile(values, [25, 50, 75]))
    assert np.isnan(summary_statistics([])["mean"])


def test_table_forms():
    liver = {"DSC": summary_statistics([0.9, 0.8]), "NSD": summary_statistics([0.95, 0.85])}
    summary = {"liver": liver, "mean": liver}
    table5 = format_table5(summary)
    assert "liver" in table5 and "Average" in table5 and "85.00 ± 5.00" in table5 and "90.00 ± 5.00" in table5
    markdown = format_table5(summary, markdown=True).splitlines()
    assert markdown[0] == "| Organ | DSC (%) | NSD (%) |" and markdown[2] == "| liver | 85.00 ± 5.00 | 90.00 ± 5.00 |"
    percentiles = format_accuracy_percentiles(summary)
    assert percentiles.splitlines()[2].split()[:3] == ["DSC", "Average", "82.50"]
    efficiency = format_percentile_table({"Time (s)": summary_statistics([1.0, 2.0, 3.0])}, markdown=True)
    assert "| Time (s) | 1.50 | 2.00 | 2.50 | 2.00 ± 0.82 |" in efficiency


def test_table7_form_names_unscored_methods_and_organs_and_averages_the_trained_ones():
    def scores(dsc: float) -> dict:
        return {"DSC": {"mean": dsc}, "NSD": {"mean": dsc / 2}}

    summary = {"liver": scores(0.9), "spleen": scores(0.5), "stomach": scores(0.0), "mean": scores(0.4667)}
    text = format_table7({"only CT": summary, "ASIT": None}, organs=("liver", "right kidney", "spleen"), digits=1)
    header, rule, scored, unscored = text.splitlines()
    assert header.split() == ["Method", "liver", "right", "kidney", "spleen", "Average"] and set(rule) == {"-", " "}
    assert scored.split("  ")[0] == "only CT" and scored.split()[2:] == ["90.0", "/", "45.0", "n/a", "/", "n/a",
                                                                         "50.0", "/", "25.0", "46.7", "/", "23.3"]
    assert unscored.split() == ["ASIT", *["n/a", "/", "n/a"] * 4]
    markdown = format_table7({"only CT": summary}, trained=["liver", "spleen", "pancreas"], markdown=True)
    assert markdown.splitlines()[0] == "| Method | liver | spleen | stomach | Average | Trained organs |"
    assert markdown.splitlines()[-1] == "| only CT | 90.00 / 45.00 | 50.00 / 25.00 | 0.00 / 0.00 | 46.67 / 23.34 | " \
                                        "70.00 / 35.00 |"

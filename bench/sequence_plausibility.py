"""Ranks a finished run's MRI sequences by how plausible their pseudo-labels' organ volumes are, beside the snapshot
uncertainty ranking that MDM used: an offline check of a candidate ranking, on pseudo-labels only.

    python3 bench/sequence_plausibility.py PIPELINE_FOLDER [--source ct]

The criterion, fixed before it was computed on any run (2026-12-07): for each trained organ (the config's ``organs``,
else every label of the CT dataset), the CT training labels give the mean and standard deviation of the organ's log
volume (mL). A pseudo-label's organ scores ``|log v - mean| / std`` capped at 3, and 3 when the organ is absent; a
case scores the mean over organs; a sequence the median over its cases. Lower is more plausible, and ranks first.
Organs the CT labels never hold (BTCV's duodenum) are left out: added after the first computation, which scored them
3 in every case. That first computation also read the original CT dataset's label ids, which the pipeline's copy
renumbers for the trained organs (the phantoms' left kidney: 13 there, 4 in the pseudo-labels); this script now reads
the copy. Both computations ranked the sequences the same way on both runs they were made on.
The criterion now lives in ``nnunetv2_uda.pseudolabels.organ_volumes`` (``nnUNetv2_uda_mdm --ct_labels``, the
pipeline's ``sequence_ranking: plausibility``), with a floor of 0.05 on the standard deviation; this script compares it
with the uncertainty ranking on a run that ranked by uncertainty. Nothing here reads evaluation labels. Not run in CI
(it needs a finished run with several sequences).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nnunetv2_uda.command_line import command
from nnunetv2_uda.images import read_label_map
from nnunetv2_uda.pipeline.datasets import nnunet_folders
from nnunetv2_uda.pipeline.manifest import Manifest
from nnunetv2_uda.pseudolabels.filtering import UNCERTAINTY_CSV, read_uncertainty_csv
from nnunetv2_uda.pseudolabels.label_io import label_files
from nnunetv2_uda.pseudolabels.organ_volumes import label_volumes_ml, volume_reference
from nnunetv2_uda.pseudolabels.sequences import mean_uncertainty, median_implausibility, order_sub_domains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", type=Path, help="the output_folder of a finished nnUNetv2_uda_run")
    parser.add_argument("--source", default="ct", help="whose pseudo-labels: step pseudolabel_<source> (default: ct)")
    args = parser.parse_args()
    sequences = json.loads((args.pipeline / "run.json").read_text())["sequences"]
    stages = Manifest(args.pipeline, roots=nnunet_folders()).stages
    volumes = {case: label_volumes_ml(read_label_map(path)) for case, path in
               label_files(Path(stages[f"pseudolabel_{args.source}"]["outputs"]["labels"])).items()}
    trained = Path(stages["copy_ct"]["outputs"]["folder"]) / "labelsTr"  # the CT labels the networks learned
    reference = volume_reference(trained, sorted({int(i) for v in volumes.values() for i in v.nonzero()[0]} - {0}))
    implausibility = median_implausibility(sequences, {case: reference.implausibility(case_volumes)
                                                       for case, case_volumes in volumes.items()})
    uncertainty_csv = args.pipeline / f"mdm_{args.source}_sequence_ranking" / UNCERTAINTY_CSV
    uncertainty = mean_uncertainty(sequences, read_uncertainty_csv(uncertainty_csv)) \
        if uncertainty_csv.is_file() else {}
    print(f"{'sequence':<12}{'cases':>6}{'implausibility (median)':>26}{'mean u (finite)':>18}")
    for sequence in sorted(implausibility):
        cases = sum(tag == sequence for tag in sequences.values())
        u = uncertainty.get(sequence, float("nan"))
        print(f"{sequence:<12}{cases:>6}{implausibility[sequence]:>26.2f}{u:>18.3f}")
    print("ranking by plausibility:", order_sub_domains(sequences, scores=implausibility))
    if uncertainty:
        print("ranking by uncertainty: ", order_sub_domains(sequences, scores=uncertainty))


if __name__ == "__main__":
    command(main)()

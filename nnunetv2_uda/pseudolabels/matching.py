"""``nnUNetv2_uda_mdm``: multi-domain matching, the paper's fix for sub-domains the network labels badly.

Target MRI mixes sequences (sub-domains); pseudo-labels are good on some and poor on others. Each case X of a
worse sub-domain takes the pseudo-label of the better-domain case u* whose organ volumes are closest to X's own
(eq. 5: argmin_u ||vol(X) - vol(u)||_1, volumes in mL), affinely registered onto X and warped into X's geometry.
Sub-domains are handled best first; a case's candidates are all cases of strictly better sub-domains, with the
labels they have in the output (original for the best sub-domain, already matched for the others).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_uda.pseudolabels.filtering import read_uncertainty_csv
from nnunetv2_uda.pseudolabels.label_io import (
    copy_atomically,
    image_channel_files,
    label_files,
    read_label_matching,
    require_cases,
    write_image_atomically,
    write_text_atomically,
)
from nnunetv2_uda.pseudolabels.registration import RegistrationInput, register_affine, warp_label
from nnunetv2_uda.pseudolabels.sequences import assign_sequences, order_sub_domains

MATCHES_CSV = "mdm_matches.csv"


@dataclass
class MatchRecord:
    case: str
    sequence: str
    matched_case: str  # empty for the best sub-domain (label copied unchanged)
    matched_sequence: str
    volume_L1_mL: float  # noqa: N815 (the CSV column name)
    metric_before: float  # registration's mean squares before and after (nan when copied)
    metric_after: float


def organ_volumes_ml(label: sitk.Image, label_ids: list[int]) -> np.ndarray:
    """Volume in mL of each label id (vol in eq. 5)."""
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    counts = np.bincount(sitk.GetArrayViewFromImage(label).ravel().astype(np.int64), minlength=max(label_ids) + 1)
    return counts[label_ids] * voxel_ml


def nearest_by_volume(volumes: np.ndarray, candidates: dict[str, np.ndarray]) -> tuple[str, float]:
    """The candidate minimizing ||vol(X) - vol(u)||_1 (ties: first by name), and that distance."""
    if not candidates:
        raise ValueError("no candidate cases to match against")
    distances = {case: float(np.abs(volumes - other).sum()) for case, other in candidates.items()}
    best = min(sorted(distances), key=distances.__getitem__)
    return best, distances[best]


def _write_matches_csv(records: list[MatchRecord], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(MatchRecord.__dataclass_fields__))
    writer.writeheader()
    for record in records:
        writer.writerow(asdict(record))
    write_text_atomically(buffer.getvalue(), path)


def multi_domain_matching(images_folder: Path | str, pseudolabel_folder: Path | str, output_folder: Path | str,
                          order: list[str] | None = None, sequences_csv: Path | str | None = None,
                          uncertainty_csv: Path | str | None = None,
                          registration_on: RegistrationInput = "labels") -> list[MatchRecord]:
    """Writes ``OUTPUT_FOLDER/<case>.nii.gz`` for every pseudo-labelled case and ``mdm_matches.csv``."""
    images_folder, pseudolabel_folder, output = Path(images_folder), Path(pseudolabel_folder), Path(output_folder)
    labels = label_files(pseudolabel_folder)
    require_cases(labels, pseudolabel_folder, "pseudo-label")
    images = image_channel_files(images_folder)
    require_cases(images, images_folder, "target images")
    without_image = sorted(set(labels) - set(images))
    if without_image:
        raise FileNotFoundError(f"case(s) {without_image} have a pseudo-label but no image <case>_0000.nii.gz in "
                                f"{images_folder}")
    cases = sorted(labels)
    sequences = assign_sequences(cases, images_folder, Path(sequences_csv) if sequences_csv else None)
    uncertainty = read_uncertainty_csv(Path(uncertainty_csv)) if uncertainty_csv else None
    ranking = order_sub_domains(sequences, order, uncertainty)
    output.mkdir(parents=True, exist_ok=True)
    if len(ranking) == 1:
        print(f"multi-domain matching: a single sub-domain ({ranking[0]}), nothing to match; pseudo-labels are "
              f"copied unchanged to {output}")
    else:
        print(f"multi-domain matching: sub-domains best first: {ranking}")

    def read_case(case: str, folder_labels: dict[str, Path]) -> tuple[sitk.Image, sitk.Image]:
        image = sitk.ReadImage(str(images[case][0]))
        return image, read_label_matching(folder_labels[case], image, case)

    label_ids = sorted({int(v) for case in cases
                        for v in np.unique(sitk.GetArrayViewFromImage(read_case(case, labels)[1])) if v > 0})
    records: list[MatchRecord] = []
    done: dict[str, Path] = {}
    for rank, sequence in enumerate(ranking):
        members = [case for case in cases if sequences[case] == sequence]
        candidates = {case: organ_volumes_ml(read_case(case, done)[1], label_ids) for case in done}
        for case in tqdm(members, desc=f"multi-domain matching {sequence}"):
            destination = output / f"{case}.nii.gz"
            if rank == 0:
                read_case(case, labels)  # geometry check before copying
                copy_atomically(labels[case], destination)
                records.append(MatchRecord(case, sequence, "", "", float("nan"), float("nan"), float("nan")))
                continue
            image, label = read_case(case, labels)
            match, distance = nearest_by_volume(organ_volumes_ml(label, label_ids), candidates)
            match_image, match_label = read_case(match, done)
            fixed, moving = (label, match_label) if registration_on == "labels" else (image, match_image)
            try:
                result = register_affine(fixed, moving, registration_on)
            except (RuntimeError, ValueError) as error:
                raise RuntimeError(f"case '{case}': registering matched case '{match}' failed: {error}") from error
            write_image_atomically(warp_label(match_label, image, result.transform), destination)
            records.append(MatchRecord(case, sequence, match, sequences[match], distance, result.metric_before,
                                       result.metric_after))
            print(f"{case} ({sequence}) <- {match} ({sequences[match]}): volume L1 {distance:.1f} mL, mean squares "
                  f"{result.metric_before:.4g} -> {result.metric_after:.4g}")
        done.update({case: output / f"{case}.nii.gz" for case in members})
    _write_matches_csv(records, output / MATCHES_CSV)
    return records


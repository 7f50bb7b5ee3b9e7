"""``nnUNetv2_uda_mdm``: multi-domain matching, the paper's fix for sub-domains the network labels badly.

Target MRI mixes sequences (sub-domains); pseudo-labels are good on some and poor on others. Each case X of a
worse sub-domain takes the pseudo-label of the better-domain case u* whose organ volumes are closest to X's own
(eq. 5: argmin_u ||vol(X) - vol(u)||_1, volumes in mL), affinely registered onto X (or, between series of one
patient, left where the scanner placed it) and warped into X's geometry.
Where the patients are known and X's own patient has a case among the candidates, u* is the nearest of those: a series
of the same patient fits X's anatomy as no other patient's can (the paper's data had one series per patient).
Sub-domains are ranked by the user's order, by how plausible their organ volumes are against labeled CT cases, or
by their mean snapshot uncertainty; they are handled best first, and a case's candidates are all cases of strictly
better sub-domains, with the labels they have in the output (original for the best sub-domain, already matched for
the others). MDM assumes a match's label is better than the case's own; with the CT labels' organ volumes at hand that
can be checked per case (``keep_more_plausible``): a ranking of sub-domains by their medians says nothing about a
single case, least of all when a sub-domain holds one or two cases.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_uda.command_line import EXPECTED_ERRORS, one_line
from nnunetv2_uda.images import read_image, read_label_map
from nnunetv2_uda.output_folders import check_output_folder, new_output_folder
from nnunetv2_uda.pseudolabels.filtering import read_uncertainty_csv
from nnunetv2_uda.pseudolabels.label_io import (
    FailedCasesError,
    PseudoLabelError,
    image_channel_files,
    label_files,
    read_label_matching,
    read_reference,
    require_cases,
)
from nnunetv2_uda.pseudolabels.organ_volumes import label_volumes_ml, select, volume_reference
from nnunetv2_uda.pseudolabels.registration import RegistrationInput, register_affine, warp_label
from nnunetv2_uda.pseudolabels.sequences import (
    assign_patients,
    assign_sequences,
    mean_uncertainty,
    median_implausibility,
    order_sub_domains,
)

MATCHES_CSV = "mdm_matches.csv"
MATCHES_PNG = "mdm_matches.png"
FIGURE_CASES = 6  # matched cases shown in MATCHES_PNG
# a sub-domain ranked first on fewer cases rests its rank on one or two label maps' volumes or uncertainty: on CHAOS
# T2 plus one patient's T1 the plausibility ranking put a single T1 volume first and every T2 volume took its label
FEW_CASES = 3


@dataclass(frozen=True)
class MatchRecord:
    """One row of MATCHES_CSV; a case of the best sub-domain (label copied unchanged) has only the first two."""

    case: str
    sequence: str
    matched_case: str = ""
    matched_sequence: str = ""
    volume_L1_mL: float = math.nan  # noqa: N815 (the CSV column name)
    metric_before: float = math.nan  # registration's mean squares before and after (nan where nothing was registered)
    metric_after: float = math.nan
    same_patient: bool = False  # the match is a series of the case's own patient
    own_implausibility: float = math.nan  # organ-volume implausibility of the case's own and its match's label (nan
    match_implausibility: float = math.nan  # without the CT labels)
    kept_own: bool = False  # the case kept its own label: its match's was no more plausible (keep_more_plausible)


def nearest_by_volume(volumes: np.ndarray, candidates: dict[str, np.ndarray]) -> tuple[str, float]:
    """The candidate minimizing ||vol(X) - vol(u)||_1 (ties: first by name), and that distance."""
    if not candidates:
        raise ValueError("no candidate cases to match against")
    distances = {case: float(np.abs(volumes - other).sum()) for case, other in candidates.items()}
    best = min(sorted(distances), key=distances.__getitem__)
    return best, distances[best]


def _write_matches_csv(records: list[MatchRecord], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(MatchRecord.__dataclass_fields__))
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


Panel = tuple[str, np.ndarray, list[np.ndarray]]  # title, an image slice, label maps of that slice


def label_panel(title: str, image: np.ndarray, labels: list[np.ndarray]) -> Panel:
    """The axial slice of a (z, y, x) image where its label maps together cover most."""
    index = int(np.argmax(np.any([label > 0 for label in labels], axis=0).sum(axis=(1, 2))))
    return title, image[index], [label[index] for label in labels]


def _figure_panel(case: str, sequence: str, match: str, image_file: Path, own: sitk.Image, matched: sitk.Image,
                  allow_nonfinite: bool) -> Panel | None:
    """A matched case's panel, or None if its image cannot be read whole (the case is still matched: the figure only
    shows)."""
    try:
        image = sitk.GetArrayFromImage(read_image(image_file, allow_nonfinite))
    except EXPECTED_ERRORS:
        return None
    return label_panel(f"{case} ({sequence}) <- {match}", image,
                       [sitk.GetArrayFromImage(own), sitk.GetArrayFromImage(matched)])


def plot_label_panels(panels: list[Panel], columns: list[str], path: Path) -> None:
    """One row per panel: each of its label maps (``columns`` name them) over its image slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(panels), len(columns), figsize=(3.5 * len(columns), 3.2 * len(panels)),
                                squeeze=False)
    for row, (title, image, labels) in zip(axes, panels, strict=True):
        for axis, label, column in zip(row, labels, columns, strict=True):
            axis.imshow(image, cmap="gray", interpolation="nearest")
            axis.imshow(np.ma.masked_equal(label, 0), cmap="tab20", vmin=0, vmax=20, alpha=0.55,
                        interpolation="nearest")
            axis.set_title(f"{title}\n{column}", fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def multi_domain_matching(images_folder: Path | str, pseudolabel_folder: Path | str, output_folder: Path | str,
                          order: list[str] | None = None, sequences_csv: Path | str | None = None,
                          uncertainty_csv: Path | str | None = None, ct_labels: Path | str | None = None,
                          registration_on: RegistrationInput = "labels", overwrite: bool = False,
                          allow_nonfinite: bool = False, keep_more_plausible: bool = False) -> list[MatchRecord]:
    """Writes ``OUTPUT_FOLDER/<case>.nii.gz`` for every pseudo-labelled case, ``mdm_matches.csv`` and, where a case
    was matched, ``mdm_matches.png`` (the first :data:`FIGURE_CASES` matched cases: own label against matched label).

    The output folder must be new or empty unless ``overwrite`` (then it is replaced once the new one is complete).
    A case whose files cannot be read, or whose match cannot be registered, is left out (and is no candidate for
    others); the other cases are still written, then :class:`FailedCasesError` names the failed ones.
    ``allow_nonfinite`` replaces NaN/inf voxels of images read for ``registration_on`` ``"images"`` or ``"body"``.
    Without ``order``, the sub-domains are ranked by ``ct_labels`` (a folder of labeled CT cases: median organ-volume
    implausibility, :mod:`organ_volumes`) or ``uncertainty_csv`` (mean snapshot uncertainty), whichever is given.
    ``keep_more_plausible`` (needs ``ct_labels``) lets a case keep its own label unless its match's organ volumes are
    more plausible than its own.
    """
    images_folder, pseudolabel_folder, output = Path(images_folder), Path(pseudolabel_folder), Path(output_folder)
    labels = label_files(pseudolabel_folder)
    require_cases(labels, pseudolabel_folder, "pseudo-label")
    images = image_channel_files(images_folder)
    require_cases(images, images_folder, "target images", "<case>_0000.nii.gz")
    without_image = sorted(set(labels) - set(images))
    if without_image:
        raise PseudoLabelError(f"case(s) {without_image} have a pseudo-label in {pseudolabel_folder} but no image "
                               f"<case>_0000.nii.gz in {images_folder}")
    if uncertainty_csv and ct_labels:
        raise PseudoLabelError("give either the uncertainty CSV or the CT labels to rank the sub-domains by, not both")
    if keep_more_plausible and not ct_labels:
        raise PseudoLabelError("keeping a case's own pseudo-label where it is more plausible needs the CT labels whose "
                               "organ volumes say what is plausible (--ct_labels)")
    inputs = (images_folder, pseudolabel_folder, sequences_csv, uncertainty_csv, ct_labels)
    check_output_folder(output, inputs, overwrite)
    cases = sorted(labels)
    sequences = assign_sequences(cases, images_folder, Path(sequences_csv) if sequences_csv else None)
    patients = assign_patients(cases, images_folder, Path(sequences_csv) if sequences_csv else None)
    if order or not (uncertainty_csv or ct_labels):
        order_sub_domains(sequences, order)  # a bad order, or no way to rank, is refused before any label is read
    several = len(set(sequences.values())) > 1
    if registration_on == "world" and several and not patients:
        raise PseudoLabelError("registration_on 'world' carries labels only between series of one patient, and no case "
                               "names its patient (a 'patient' column in the sequences CSV, or \"patient\" in the "
                               "<case>.json sidecars); use 'labels' or 'body'")
    uncertainty = read_uncertainty_csv(Path(uncertainty_csv)) if uncertainty_csv else None
    scores = mean_uncertainty(sequences, uncertainty) if uncertainty is not None and several and not order else None

    on_images = registration_on in ("images", "body")  # else the label maps are registered (or not, for world)

    def read_target(case: str) -> sitk.Image:
        """The case's image: its geometry only, unless registration reads the images."""
        image_file = images[case][0]
        return read_image(image_file, allow_nonfinite) if on_images else read_reference(image_file)

    failures: dict[str, str] = {}
    volumes: dict[str, np.ndarray] = {}
    for case in tqdm(cases, desc="checking pseudo-labels", disable=None):
        try:
            volumes[case] = label_volumes_ml(read_label_matching(labels[case], read_target(case), case))
        except EXPECTED_ERRORS as error:
            failures[case] = one_line(error)
    if len(failures) == len(cases):
        raise FailedCasesError(failures, len(cases), None)
    label_ids = sorted({int(value) for case_volumes in volumes.values() for value in np.flatnonzero(case_volumes)}
                       - {0})
    if several and not label_ids:
        raise PseudoLabelError(f"every pseudo-label in {pseudolabel_folder} is empty: there are no organ volumes to "
                               f"match by")
    reference = volume_reference(Path(ct_labels), label_ids) if ct_labels and several else None
    if reference is not None and not order:
        scores = median_implausibility(sequences, {case: reference.implausibility(case_volumes)
                                                   for case, case_volumes in volumes.items()})
    ranking = order_sub_domains(sequences, order, scores)
    if not several:
        print(f"multi-domain matching: a single sub-domain ({ranking[0]}), nothing to match; pseudo-labels are "
              f"copied unchanged to {output}")
    else:
        how = "" if order else f" ({'organ-volume implausibility' if ct_labels else 'mean uncertainty u'}: " + \
            ", ".join(f"{sequence} {scores[sequence]:.3g}" for sequence in ranking) + ")"
        print(f"multi-domain matching: sub-domains best first: {ranking}{how}")
        best = sum(1 for sequence in sequences.values() if sequence == ranking[0])
        if not order and best < FEW_CASES:
            print(f"warning: the best-ranked sub-domain {ranking[0]} holds {best} case(s), so its rank rests on "
                  f"{'it' if best == 1 else 'them'} alone, and the {len(sequences) - best} other cases take labels "
                  f"from it; check {MATCHES_PNG} or give --order", file=sys.stderr)

    records: list[MatchRecord] = []
    panels: list[Panel] = []
    with new_output_folder(output, inputs, overwrite) as staging:
        done: dict[str, np.ndarray] = {}  # case written -> volumes of the label written (label_volumes_ml)
        for rank, sequence in enumerate(ranking):
            members = [case for case in cases if sequences[case] == sequence and case not in failures]
            candidates = {case: select(case_volumes, label_ids) for case, case_volumes in done.items()}
            written: dict[str, np.ndarray] = {}
            for case in tqdm(members, desc=f"multi-domain matching {sequence}", disable=None):
                destination = staging / f"{case}.nii.gz"
                if rank == 0:
                    shutil.copyfile(labels[case], destination)  # its geometry was checked above
                    records.append(MatchRecord(case, sequence))
                    written[case] = volumes[case]
                    continue
                try:
                    if not candidates:
                        raise PseudoLabelError(f"case '{case}': no case of a better sub-domain was written to match "
                                               f"it with")
                    patient = patients.get(case)
                    own_patient = {other: other_volumes for other, other_volumes in candidates.items()
                                   if patient is not None and patients.get(other) == patient}
                    if registration_on == "world" and not own_patient:
                        raise PseudoLabelError(f"case '{case}': registration_on 'world' carries labels only between "
                                               f"series of one patient, and no series of its patient ({patient}) was "
                                               f"written before it; use 'labels' or 'body' for such cases")
                    match, distance = nearest_by_volume(select(volumes[case], label_ids), own_patient or candidates)
                    own_score, match_score = (math.nan, math.nan) if reference is None else \
                        (reference.implausibility(volumes[case]), reference.implausibility(done[match]))
                    record = MatchRecord(case, sequence, match, sequences[match], distance,
                                         same_patient=bool(own_patient), own_implausibility=own_score,
                                         match_implausibility=match_score)
                    if keep_more_plausible and match_score >= own_score:
                        shutil.copyfile(labels[case], destination)
                        records.append(dataclasses.replace(record, kept_own=True))
                        written[case] = volumes[case]
                        print(f"{case} ({sequence}) keeps its own pseudo-label: {match} ({sequences[match]}) is no "
                              f"more plausible (organ-volume implausibility {match_score:.3g}, its own "
                              f"{own_score:.3g})")
                        continue
                    image, label = read_target(case), read_label_map(labels[case])  # geometry checked above
                    match_label = read_label_map(staging / f"{match}.nii.gz")
                    fixed, moving = (image, read_target(match)) if on_images else (label, match_label)
                    try:
                        result = register_affine(fixed, moving, registration_on)
                    except (RuntimeError, ValueError) as error:
                        reason = str(error).strip().splitlines()[-1]
                        raise PseudoLabelError(f"case '{case}' ({labels[case]}): registering matched case '{match}' "
                                               f"failed: {reason}") from error
                except EXPECTED_ERRORS as error:
                    failures[case] = one_line(error)
                    continue
                warped = warp_label(match_label, image, result.transform)
                sitk.WriteImage(warped, str(destination), True)
                if len(panels) < FIGURE_CASES:
                    panel = _figure_panel(case, sequence, match, images[case][0], label, warped, allow_nonfinite)
                    panels += [panel] if panel is not None else []
                records.append(dataclasses.replace(record, metric_before=result.metric_before,
                                                   metric_after=result.metric_after))
                written[case] = label_volumes_ml(warped)
                print(f"{case} ({sequence}) <- {match} ({sequences[match]}{', same patient' if own_patient else ''}):"
                      f" volume L1 {distance:.1f} mL, mean squares {result.metric_before:.4g} -> "
                      f"{result.metric_after:.4g}{' (world coordinates)' if registration_on == 'world' else ''}")
            done.update(written)
        if not records:
            raise FailedCasesError(failures, len(cases), None)
        _write_matches_csv(records, staging / MATCHES_CSV)
        if panels:
            column = "after MDM (world coordinates)" if registration_on == "world" else "after MDM (registered)"
            plot_label_panels(panels, ["own pseudo-label", column], staging / MATCHES_PNG)
    if failures:
        raise FailedCasesError(failures, len(cases), output)
    return records

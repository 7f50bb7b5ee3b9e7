"""Which MRI sequence (sub-domain) each target case belongs to, and the order of sub-domains by quality."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.pseudolabels.label_io import PseudoLabelError, read_csv_rows

# tokens of a case name that name a sequence, e.g. PhantomMRI_T2_0003 or amos_0507_T1_inphase
SEQUENCE_TOKENS = ("T1", "T1C", "T1CE", "T1W", "T2", "T2W", "T2SPIR", "FLAIR", "DWI", "ADC", "PD", "DIXON",
                   "INPHASE", "OUTPHASE", "ARTERIAL", "VENOUS", "DELAYED")
UNKNOWN = "unknown"


def sequence_from_name(case: str) -> str | None:
    tokens = [token.upper() for token in case.split("_")]
    found = [token for token in tokens if token in SEQUENCE_TOKENS]
    return found[0] if found else None


def read_sequences_csv(path: Path) -> dict[str, str]:
    return {row["case"]: row["sequence"] for row in read_csv_rows(path, ("case", "sequence"), "--sequences_csv")}


def sidecar_file(images_folder: Path, case: str) -> Path:
    return Path(images_folder) / f"{case}.json"


def read_sidecar(images_folder: Path, case: str) -> dict | None:
    """The JSON object of the sidecar ``<case>.json`` next to the images, None without one."""
    sidecar = sidecar_file(images_folder, case)
    return read_json_object(sidecar, f"not the sidecar of case '{case}' (a JSON object such as "
                                     f'{{"sequence": "T2"}})', PseudoLabelError) if sidecar.is_file() else None


def assign_sequences(cases: list[str], images_folder: Path, sequences_csv: Path | None = None) -> dict[str, str]:
    """Sequence per case from (first that knows it) the CSV, the JSON sidecar ``<case>.json`` next to the
    images, or a sequence token in the case name.

    Cases nobody knows form one sub-domain ``unknown`` when no case is known (a single-sequence set such as
    CHAOS T2); mixed with known ones they are an error, since guessing would mix sequences.
    """
    from_csv = read_sequences_csv(sequences_csv) if sequences_csv else {}
    sequences: dict[str, str | None] = {}
    for case in cases:
        if case in from_csv:
            sequences[case] = from_csv[case]
            continue
        sidecar = read_sidecar(images_folder, case)
        if sidecar is None:
            sequences[case] = sequence_from_name(case)
        elif "sequence" in sidecar:
            sequences[case] = str(sidecar["sequence"])
        else:
            raise PseudoLabelError(f"case '{case}': sidecar {sidecar_file(images_folder, case)} has no 'sequence'")
    unknown = sorted(case for case, sequence in sequences.items() if sequence is None)
    if unknown and len(unknown) < len(cases):
        raise PseudoLabelError(f"no sequence known for case(s) {unknown}: give a --sequences_csv (case,sequence), a "
                               f"sidecar {images_folder}/<case>.json with {{\"sequence\": ...}}, or a name token "
                               f"({', '.join(SEQUENCE_TOKENS)})")
    return {case: sequence or UNKNOWN for case, sequence in sequences.items()}


def assign_patients(cases: list[str], images_folder: Path, sequences_csv: Path | None = None) -> dict[str, str]:
    """Patient per case, where known: the CSV's optional ``patient`` column if it has one, else the ``patient`` key
    of the sidecar ``<case>.json``. Series of one patient share its anatomy, which no other patient's label fits as
    well; cases without a patient are left out."""
    if sequences_csv:
        rows = read_csv_rows(sequences_csv, ("case", "sequence"), "--sequences_csv")
        if rows and "patient" in rows[0]:
            return {row["case"]: row["patient"].strip() for row in rows
                    if row["case"] in cases and (row["patient"] or "").strip()}
    patients = {}
    for case in cases:
        patient = (read_sidecar(images_folder, case) or {}).get("patient")
        if patient is None:
            continue
        if isinstance(patient, bool) or not isinstance(patient, str | int) or not str(patient).strip():
            raise PseudoLabelError(f"case '{case}': sidecar {sidecar_file(images_folder, case)} has 'patient' "
                                   f"{patient!r}, not a name or number")
        patients[case] = str(patient).strip()
    return patients


def order_sub_domains(sequences: dict[str, str], order: list[str] | None = None,
                      scores: dict[str, float] | None = None) -> list[str]:
    """Sub-domains best first: the user's order, else by ``scores`` (one per sub-domain, lower is better; from
    :func:`mean_uncertainty` or :func:`median_implausibility`)."""
    present = sorted(set(sequences.values()))
    if order:
        repeated = sorted({sequence for sequence in order if order.count(sequence) > 1})
        if repeated:
            raise PseudoLabelError(f"sub-domain(s) {repeated} appear more than once in --order {order}")
        empty = [sequence for sequence in order if sequence not in present]
        if empty:
            raise PseudoLabelError(f"sub-domain(s) {empty} of --order have no cases (sequences present: {present})")
        unordered = [sequence for sequence in present if sequence not in order]
        if unordered:
            raise PseudoLabelError(f"sub-domain(s) {unordered} are missing from --order {order}")
        return list(order)
    if len(present) == 1:
        return present
    if scores is None:
        raise PseudoLabelError(f"{len(present)} sub-domains {present}: give their order (--order, best first), the "
                               f"labeled CT cases to rank them by the plausibility of their organ volumes "
                               f"(--ct_labels) or the uncertainty CSV of nnUNetv2_uda_filter_pseudolabels "
                               f"(--uncertainty_csv)")
    return sorted(present, key=lambda sequence: (scores[sequence], sequence))


def _per_sub_domain(sequences: dict[str, str], values: dict[str, float],
                    reduce: Callable[[list[float]], float]) -> dict[str, float]:
    """``reduce`` of each sub-domain's case values (cases without a value left out; inf where none has one)."""
    grouped: dict[str, list[float]] = {sequence: [] for sequence in sequences.values()}
    for case, sequence in sequences.items():
        if case in values:
            grouped[sequence].append(values[case])
    return {sequence: reduce(found) if found else math.inf for sequence, found in grouped.items()}


def mean_uncertainty(sequences: dict[str, str], uncertainty: dict[str, float]) -> dict[str, float]:
    """Each sub-domain's mean snapshot uncertainty u over its cases with a finite u (inf where none has one)."""
    missing = sorted(case for case in sequences if case not in uncertainty)
    if missing:
        raise PseudoLabelError(f"case(s) {missing} are not in the --uncertainty_csv")
    return _per_sub_domain(sequences, {case: u for case, u in uncertainty.items() if math.isfinite(u)},
                           statistics.fmean)


def median_implausibility(sequences: dict[str, str], implausibility: dict[str, float]) -> dict[str, float]:
    """Each sub-domain's median organ-volume implausibility over its cases that have one (inf where none has)."""
    return _per_sub_domain(sequences, implausibility, statistics.median)

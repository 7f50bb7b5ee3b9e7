"""Per-case efficiency of a prediction command, measured like FLARE's efficiency script.

FLARE times each case as a separate run (start-up and model loading included) and samples GPU memory every
0.1 s, reporting its maximum and the area under the memory-time curve (sum of samples * 0.1, MB*s). We do the same
by giving the command a one-case input folder per case. Peak memory is the largest sum over the process tree of the
proportional set size (PSS: a page shared by n processes counts 1/n in each, so pages that forked workers share
copy-on-write are counted once, where summed RSS would count them once per worker), sampled at the same interval.
``wait4``'s ``ru_maxrss`` is not used: Linux folds the forking parent's memory into it at ``exec``, so it reports the
profiler's own size whenever that is larger than the command's.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from nnunetv2_uda.atomic_files import is_hidden, written_atomically
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.evaluation.tables import format_percentile_table, summary_statistics

SAMPLING_INTERVAL_S = 0.1
PROFILE_CSV = "profile.csv"
_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_\d{4}$")
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


class ProfileError(UserInputError):
    """A prediction command or input folder that cannot be profiled."""


@dataclass
class CaseProfile:
    case: str
    returncode: int
    time_s: float
    peak_memory_mb: float
    gpu_max_mb: float | None
    gpu_auc_mb_s: float | None


def group_cases(input_folder: str | Path, file_ending: str = ".nii.gz") -> dict[str, list[Path]]:
    """nnU-Net input files (``<case>_<XXXX><ending>``) grouped by case; hidden names are never cases, and a file
    without the channel suffix is an error naming it (a prediction command would fail on it, or skip it)."""
    input_folder = Path(input_folder)
    if not input_folder.is_dir():
        raise ProfileError(f"input folder {input_folder} does not exist")
    cases: dict[str, list[Path]] = {}
    for path in sorted(input_folder.iterdir()):
        if path.name.endswith(file_ending) and not is_hidden(path):
            match = _CHANNEL_SUFFIX.match(path.name[: -len(file_ending)])
            if match is None:
                raise ProfileError(f"{path}: not named <case>_0000{file_ending} (nnU-Net's input naming, one file "
                                   f"per channel); rename it")
            cases.setdefault(match["case"], []).append(path)
    return cases


def _check_outputs(input_folder: Path, output_folder: Path, csv_file: Path) -> None:
    """The input folder is never written, and a CSV this command did not write is never replaced."""
    source = input_folder.resolve()
    for folder, what in ((output_folder, "output folder"), (csv_file.parent, "--csv folder")):
        if folder.resolve() == source or source in folder.resolve().parents:
            raise ProfileError(f"{what} {folder} is or lies inside the input folder {input_folder}, which is never "
                               f"written; choose another")
    if output_folder.exists() and not output_folder.is_dir():
        raise ProfileError(f"output folder {output_folder} exists and is not a folder")
    if csv_file.exists():
        with open(csv_file, newline="", errors="replace") as handle:
            header = next(csv.reader(handle), [])
        if header != list(CaseProfile.__dataclass_fields__):
            raise ProfileError(f"{csv_file} exists and was not written by this command; it is never replaced: "
                               f"choose another output folder or --csv")


def _memory_mb(pid: int) -> float:
    """One process's PSS from /proc (its RSS where the kernel has no smaps_rollup); 0 for a process gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        return 0.0


def _process_tree(root_pid: int) -> set[int]:
    """The live processes (zombies left out) among ``root_pid`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    state, parent = handle.read().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if state not in ("Z", "X"):
                parents[int(entry)] = int(parent)
    if root_pid not in parents:
        return set()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, frontier = set(), [root_pid]
    while frontier:  # /proc is read one process at a time: a pid reused meanwhile can close a cycle
        pid = frontier.pop()
        if pid not in tree:
            tree.add(pid)
            frontier.extend(children.get(pid, []))
    return tree


def process_tree_memory_mb(root_pid: int) -> float:
    """Summed PSS of ``root_pid`` and its live descendants: the tree's real footprint, shared pages counted once."""
    return sum(_memory_mb(pid) for pid in _process_tree(root_pid))


def gpu_memory_reader() -> Callable[[], float] | None:
    """A function returning the used memory (MB) of the visible GPU as nvidia-smi reports it (FLARE's source), or
    None where nvidia-smi is missing or finds no device."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible.isdigit():
        query += ["-i", visible]

    def read_nvidia_smi() -> float:
        output = subprocess.run(query, capture_output=True, text=True, check=True).stdout
        return sum(float(line) for line in output.split() if line.strip())

    try:
        read_nvidia_smi()
    except (subprocess.CalledProcessError, ValueError, OSError):
        return None
    return read_nvidia_smi


class _Sampler(threading.Thread):
    """Samples the process tree's memory (PSS) and the GPU memory (above its level before the run) every interval."""

    def __init__(self, pid: int, gpu_reader: Callable[[], float] | None, gpu_baseline_mb: float, interval_s: float):
        super().__init__(daemon=True)
        self.pid, self.gpu_reader, self.gpu_baseline_mb, self.interval_s = pid, gpu_reader, gpu_baseline_mb, interval_s
        self.peak_memory_mb = 0.0
        self.gpu_samples_mb: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.perf_counter()
            self.peak_memory_mb = max(self.peak_memory_mb, process_tree_memory_mb(self.pid))
            if self.gpu_reader is not None:
                self.gpu_samples_mb.append(max(0.0, self.gpu_reader() - self.gpu_baseline_mb))
            self.stop_event.wait(max(0.0, self.interval_s - (time.perf_counter() - started)))


def profile_command(
    command: Sequence[str],
    log_file: str | Path,
    gpu_reader: Callable[[], float] | None = None,
    interval_s: float = SAMPLING_INTERVAL_S,
) -> tuple[int, float, float, float | None, float | None]:
    """Run ``command`` once: (returncode, wall time s, peak MB, GPU max MB, GPU area MB*s); output to log_file"""
    gpu_baseline = gpu_reader() if gpu_reader is not None else 0.0
    with open(log_file, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        started = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT)
        sampler = _Sampler(process.pid, gpu_reader, gpu_baseline, interval_s)
        sampler.start()
        _, status, _ = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop_event.set()
        sampler.join()
    peak_memory = sampler.peak_memory_mb
    if gpu_reader is None:
        return process.returncode, elapsed, peak_memory, None, None
    samples = sampler.gpu_samples_mb or [0.0]
    return process.returncode, elapsed, peak_memory, max(samples), sum(samples) * interval_s


def profile_folder(
    input_folder: str | Path,
    output_folder: str | Path,
    command_template: Sequence[str],
    file_ending: str = ".nii.gz",
    csv_file: str | Path | None = None,
    interval_s: float = SAMPLING_INTERVAL_S,
    progress: bool = True,
) -> list[CaseProfile]:
    """Run ``command_template`` once per case ({input}: a one-case input folder, {output}: ``output_folder``,
    {case}: the case id), write the per-case CSV (default OUTPUT_FOLDER/profile.csv) and return the profiles.

    A failing case is recorded with its return code and the others still run; its output is in profile_log.txt.
    """
    if not any("{input}" in part for part in command_template):
        raise ProfileError(f"the prediction command must contain an {{input}} placeholder: "
                           f"{' '.join(command_template)}")
    cases = group_cases(input_folder, file_ending)
    if not cases:
        raise ProfileError(f"no input files ending with {file_ending} in {input_folder}")
    output_folder = Path(output_folder)
    csv_file = Path(csv_file) if csv_file is not None else output_folder / PROFILE_CSV
    _check_outputs(Path(input_folder), output_folder, csv_file)
    output_folder.mkdir(parents=True, exist_ok=True)
    log_file = output_folder / "profile_log.txt"
    gpu_reader = gpu_memory_reader()
    profiles = []
    for case, files in tqdm(cases.items(), desc="Profiling cases", disable=not progress):
        with tempfile.TemporaryDirectory(prefix=f"profile_{case}_") as case_input:
            for file in files:
                os.symlink(file.resolve(), Path(case_input) / file.name)
            substitutions = {"{input}": case_input, "{output}": str(output_folder), "{case}": case}
            command = [_substitute(part, substitutions) for part in command_template]
            measured = profile_command(command, log_file, gpu_reader, interval_s)
        profiles.append(CaseProfile(case, *measured))
    _write_csv(profiles, csv_file)
    return profiles


def _substitute(part: str, substitutions: dict[str, str]) -> str:
    for placeholder, value in substitutions.items():
        part = part.replace(placeholder, value)
    return part


def _write_csv(profiles: Sequence[CaseProfile], csv_file: Path) -> None:
    with written_atomically(csv_file) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CaseProfile.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(
            {
                key: ("" if value is None else f"{value:.3f}" if isinstance(value, float) else value)
                for key, value in asdict(profile).items()
            }
            for profile in profiles
        )


def efficiency_statistics(profiles: Sequence[CaseProfile]) -> dict[str, dict[str, float]]:
    """Table 8 rows (time, peak memory, GPU max, GPU area) over the cases whose command succeeded."""
    succeeded = [p for p in profiles if p.returncode == 0]
    rows = {
        "Time (s)": summary_statistics(p.time_s for p in succeeded),
        "Peak memory (MB)": summary_statistics(p.peak_memory_mb for p in succeeded),
    }
    if any(p.gpu_max_mb is not None for p in succeeded):
        rows["GPU memory max (MB)"] = summary_statistics(p.gpu_max_mb for p in succeeded)
        rows["GPU memory AUC (MB*s)"] = summary_statistics(p.gpu_auc_mb_s for p in succeeded)
    return rows


def format_efficiency_table(profiles: Sequence[CaseProfile], markdown: bool = False) -> str:
    """Table 8 form: 25th, 50th, 75th percentile and mean ± std of each efficiency measure."""
    return format_percentile_table(efficiency_statistics(profiles), markdown=markdown)

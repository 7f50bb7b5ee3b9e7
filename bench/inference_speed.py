"""nnUNetv2_predict_fast's speed, phase by phase, and against stock nnUNetv2_predict, in one run.

Sections (each command or phase in a fresh interpreter, so that start-up and peaks do not carry over):

1. **one case** at ``--shape``: stock ``nnUNetv2_predict`` (unless ``--no-stock``) and ``nnUNetv2_predict_fast``
   end to end (wall, peak memory of the process tree, on CUDA the GPU memory curve sampled every 0.1 s with
   nvidia-smi, as FLARE does), the network's own sliding-window time, and the export step alone (stock vs fast).
2. **start-up**: time from launching ``nnUNetv2_predict_fast`` to its first network call, less the first case's
   reading and preprocessing (a small volume, so they are short anyway); best of three. ``import torch`` alone is
   printed beside it (best of three, measured right after): no Python predictor starts faster.
   ``--startup-only`` runs this section alone (about a minute on a CPU).
3. **per-case work around the network** at ``--shape`` (read, check, crop, normalize, resample, decide, export,
   write): the fast predictor as it was until now (nnU-Net's preprocessor with torch input resampling, argmax in
   slabs, nnU-Net's writer, one step after the other) against ``nnUNetPredictorFast`` now, each = one case's wall
   time minus its network time.
4. **a folder of** ``--folder-cases`` volumes of ``--folder-shape`` in one call: end to end against the summed
   network time, and seconds per case.

``--trivial-network`` leaves the network out of sections 1 and 3: a 1x1x1 convolution with the real network's input
and output channels (its classes are bands of the normalized intensity, so label maps have large regions and
compress like segmentations) stands in for it, so that the work around the network runs on a CPU at the full
100x512x512 size. Sections 2 and 4 always use the real network (the paper's small 3d_fullres network with random
weights, patch 40x224x192, or ``--model-folder``). With ``--images`` both commands also predict that folder and
per-label Dice between them is printed (use a trained ``--model-folder``).

    python bench/inference_speed.py --device cpu --trivial-network --no-stock --folder-shape 16 224 192
    python bench/inference_speed.py --device cpu --startup-only
    python bench/inference_speed.py --device cuda                        # all at 100x512x512 (bench/gpu_check.sh)
    python bench/inference_speed.py --device cuda --model-folder $nnUNet_results/Dataset801_BTCVCT/\
nnUNetTrainerUDASmall__nnUNetPlansUDASmall__3d_fullres --images ../shared/data/Dataset802_CHAOST2/imagesTr

Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from nnunetv2_uda.evaluation.profiling import process_tree_memory_mb

BENCH_DATASET_ID = 987
BENCH_DATASET = f"Dataset{BENCH_DATASET_ID}_BenchFast"
TRIVIAL_DATASET = "Dataset988_BenchTrivial"
BENCH_TRAINER, BENCH_PLANS, BENCH_CONFIGURATION = "nnUNetTrainerUDASmall", "nnUNetPlansUDASmall", "3d_fullres"
BENCH_FOLDER = Path(__file__).resolve().parent
TRIVIAL_NETWORK_CLASS = "inference_speed.TrivialNetwork"  # importable in the commands: bench/ is on their path
STARTUP_SHAPE = (16, 96, 96)


# ----------------------------------------------------------------------------------------------- measurement helpers
def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


class GpuMemorySampler:
    """Device memory in use (MB), sampled every 0.1 s by nvidia-smi's loop mode, the way FLARE measures it."""

    def __init__(self):
        self.samples: list[float] = []
        self._process = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100", "-i", "0"],
                stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self._process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc):
        if self._process is not None:
            self._process.terminate()
            self._process.wait()

    def summary(self, baseline_mb: float) -> dict:
        used = [max(0.0, s - baseline_mb) for s in self.samples]
        return {"gpu_peak_mb": max(used, default=0.0), "gpu_area_mb_s": sum(used) * 0.1}


def gpu_baseline_mb() -> float:
    if not shutil.which("nvidia-smi"):
        return 0.0
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True).stdout.strip()
    return float(out) if out.replace(".", "").isdigit() else 0.0


def run_measured(args: list[str], env: dict, label: str) -> dict:
    """Runs a command; wall time (and the launch time, ``time.time()``), peak PSS summed over its process tree
    (0.1 s samples), GPU memory curve."""
    baseline = gpu_baseline_mb()
    print(f"[{label}] {' '.join(args)}", flush=True)
    peak_mb = 0.0
    with GpuMemorySampler() as sampler:
        launched = time.time()
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
        reader.start()
        while process.poll() is None:
            peak_mb = max(peak_mb, process_tree_memory_mb(process.pid))  # PSS: shared pages counted once
            time.sleep(0.1)
        wall = time.perf_counter() - start
        reader.join()
    if process.returncode != 0:
        raise RuntimeError(f"{label} failed ({process.returncode}):\n{''.join(output[-60:])}")
    return {"wall_s": wall, "launched_unix": launched, "host_peak_mb": peak_mb, **sampler.summary(baseline)}


def _reset_host_peak() -> int:
    """Resets this process's VmHWM (Linux) and returns the current RSS in kB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _rss_kb(os.getpid())


def _host_peak_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_import_seconds(module: str, env: dict, repeats: int = 3) -> float:
    """Seconds for a fresh interpreter to import ``module`` (best of ``repeats``: the first pays the file cache)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], env=env, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


# ------------------------------------------------------------------------------------------------ model and data
class TrivialNetwork(torch.nn.Module):
    """Stands in for the network where only the work around it is measured (``--trivial-network``): a 1x1x1
    convolution from the input to the output channels. Class k scores 2 c_k x - c_k^2, so the argmax is the class
    whose centre c_k (spread over [-2, 2]) is nearest to the normalized intensity x: label maps of large regions."""

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False):
        super().__init__()
        self.convolution = torch.nn.Conv3d(input_channels, num_classes, 1)
        centres = torch.linspace(-2.0, 2.0, num_classes)
        with torch.no_grad():
            self.convolution.weight.copy_((2 * centres[:, None] / input_channels).expand(num_classes, input_channels)
                                          .reshape(num_classes, input_channels, 1, 1, 1))
            self.convolution.bias.copy_(-centres ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolution(x)


def write_synthetic_mri(path: Path, shape_zyx: tuple[int, ...], spacing_zyx: tuple[float, ...], seed: int = 0):
    """An abdomen-like volume: body ellipse with a few brighter ellipsoids and noise (intensities like T2 MRI)."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape_zyx], indexing="ij")
    image = np.where((y / 0.8) ** 2 + (x / 0.95) ** 2 < 1, 300.0, 0.0).astype(np.float32)
    organs = [((0.1, -0.1, -0.4), (0.6, 0.4, 0.35), 500), ((0.2, 0.1, 0.55), (0.4, 0.25, 0.2), 800),
              ((-0.3, 0.45, -0.45), (0.3, 0.18, 0.15), 900), ((-0.3, 0.45, 0.45), (0.3, 0.18, 0.15), 900)]
    for centre, radius, value in organs:
        inside = sum(((c - m) / r) ** 2 for c, m, r in zip((z, y, x), centre, radius, strict=True)) < 1
        image[inside] = value
    image += rng.normal(0, 30, shape_zyx).astype(np.float32)
    itk = sitk.GetImageFromArray(image)
    itk.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    sitk.WriteImage(itk, str(path))


def _save_model(model: Path, plans: dict, dataset_json: dict, network: torch.nn.Module) -> Path:
    (model / "fold_all").mkdir(parents=True, exist_ok=True)
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    (model / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    torch.save({"network_weights": network.state_dict(), "trainer_name": BENCH_TRAINER,
                "init_args": {"configuration": BENCH_CONFIGURATION}, "inference_allowed_mirroring_axes": None},
               model / "fold_all" / "checkpoint_final.pth")
    return model


def build_random_small_model(root: Path, spacing_zyx: tuple[float, ...]) -> tuple[Path, Path]:
    """Plans the paper's small network with nnUNetPlannerUDASmall from a written fingerprint (no preprocessing) and
    saves it with random weights where nnUNetv2_predict looks for it, and beside it the same plans with
    :class:`TrivialNetwork`. Returns both model folders."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_uda.flare_labels import FLARE_LABELS
    from nnunetv2_uda.planning.small_planner import nnUNetPlannerUDASmall

    raw = root / "raw" / BENCH_DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    write_synthetic_mri(raw / "imagesTr" / "bench_000_0000.nii.gz", (8, 32, 32), spacing_zyx)
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": FLARE_LABELS, "numTraining": 1,
                    "file_ending": ".nii.gz"}
    (raw / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    # the shapes only steer the 2d configuration; the 3d_fullres patch is the paper's 40x224x192 regardless
    fingerprint = {"spacings": [list(spacing_zyx)] * 2, "shapes_after_crop": [[40, 256, 256]] * 2,
                   "median_relative_size_after_cropping": 1.0,
                   "foreground_intensity_properties_per_channel": {"0": {
                       "max": 1000.0, "mean": 500.0, "median": 500.0, "min": 0.0, "percentile_00_5": 10.0,
                       "percentile_99_5": 950.0, "std": 200.0}}}
    preprocessed = root / "preprocessed" / BENCH_DATASET
    preprocessed.mkdir(parents=True, exist_ok=True)
    (preprocessed / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    nnUNetPlannerUDASmall(BENCH_DATASET_ID).plan_experiment()
    plans = json.loads((preprocessed / f"{BENCH_PLANS}.json").read_text())
    configuration = PlansManager(plans).get_configuration(BENCH_CONFIGURATION)
    network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                     configuration.network_arch_init_kwargs_req_import, 1, len(FLARE_LABELS),
                                     allow_init=True, deep_supervision=False)
    identifier = f"{BENCH_TRAINER}__{BENCH_PLANS}__{BENCH_CONFIGURATION}"
    model = _save_model(root / "results" / BENCH_DATASET / identifier, plans, dataset_json, network)
    trivial_plans = json.loads(json.dumps(plans))
    trivial_plans["configurations"][BENCH_CONFIGURATION]["architecture"] = {
        "network_class_name": TRIVIAL_NETWORK_CLASS, "arch_kwargs": {}, "_kw_requires_import": []}
    trivial = _save_model(root / "results" / TRIVIAL_DATASET / identifier, trivial_plans, dataset_json,
                          TrivialNetwork(1, len(FLARE_LABELS)))
    print(f"random small model: patch {configuration.patch_size}, spacing {configuration.spacing}")
    return model, trivial


def model_identity(model_folder: Path) -> tuple[str, str, str, str, str]:
    """(nnUNet_results, dataset, trainer, plans, configuration) of a results folder trainer__plans__configuration."""
    trainer, plans, configuration = model_folder.name.split("__")
    return str(model_folder.parent.parent), model_folder.parent.name, trainer, plans, configuration


def synthetic_folder(folder: Path, shape: tuple[int, ...], spacing: tuple[float, ...], cases: int) -> Path:
    """``cases`` copies of one synthetic volume (writing one costs seconds at full size; the content does not
    change a case's time)."""
    folder.mkdir(parents=True, exist_ok=True)
    first = folder / "bench_000_0000.nii.gz"
    if not first.exists():
        write_synthetic_mri(first, shape, spacing)
    for index in range(1, cases):
        if not (folder / f"bench_{index:03d}_0000.nii.gz").exists():
            shutil.copy(first, folder / f"bench_{index:03d}_0000.nii.gz")
    return folder


# ------------------------------------------------------------------------------------------- in-process phases
def _predictor(model_folder: str, device: str, step_size: float):
    from nnunetv2_uda.inference.predictor import nnUNetPredictorFast

    predictor = nnUNetPredictorFast(tile_step_size=step_size, device=torch.device(device), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model_folder, ("all",))
    return predictor


def _plain(value):
    """numpy arrays and numbers in a case's properties as JSON (no pickles between the phases' processes)."""
    return value.tolist()


def phase_network(model_folder: str, image: str, device: str, step_size: float, workdir: str) -> dict:
    """The sliding window alone (what no predictor can avoid); saves the logits for the export phases."""
    predictor = _predictor(model_folder, device, step_size)
    item = next(predictor._preprocess_cases([[image]], None, None))
    _sync(device)
    start = time.perf_counter()
    logits = predictor.predict_logits_from_preprocessed_data(item["data"])
    _sync(device)
    seconds = time.perf_counter() - start
    np.save(Path(workdir) / "logits.npy", logits.cpu().numpy())
    (Path(workdir) / "properties.json").write_text(json.dumps(item["data_properties"], default=_plain))
    return {"wall_s": seconds, "network_shape": list(logits.shape)}


def phase_export(kind: str, model_folder: str, device: str, workdir: str) -> dict:
    """Export of the saved logits: nnU-Net's export_prediction_from_logits (kind 'stock', on the CPU as in
    nnUNetv2_predict's export workers) or ours (kind 'fast', logits on the compute device as the fast predictor
    leaves them)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_uda.inference.export import export_prediction_from_logits_fast

    plans_manager = PlansManager(load_json(str(Path(model_folder) / "plans.json")))
    dataset_json = load_json(str(Path(model_folder) / "dataset.json"))
    configuration = plans_manager.get_configuration(Path(model_folder).name.split("__")[-1])
    properties = json.loads((Path(workdir) / "properties.json").read_text())  # written by phase_network
    logits = np.load(Path(workdir) / "logits.npy")
    output = str(Path(workdir) / f"export_{kind}")
    if kind == "fast":
        logits = torch.from_numpy(logits).to(device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        device_baseline = torch.cuda.memory_allocated()
    rss_before = _reset_host_peak()
    start = time.perf_counter()
    if kind == "stock":
        export_prediction_from_logits(logits, properties, configuration, plans_manager, dataset_json, output)
    else:
        export_prediction_from_logits_fast(logits, properties, plans_manager, dataset_json, output)
    _sync(device)
    seconds = time.perf_counter() - start
    result = {"wall_s": seconds, "host_peak_mb": (_host_peak_kb() - rss_before) / 1024}
    if device == "cuda":
        result["device_peak_mb"] = (torch.cuda.max_memory_allocated() - device_baseline) / 2 ** 20
    return result


def _segmentation_as_before(logits: torch.Tensor, predictor, properties: dict) -> np.ndarray:
    """nnUNetv2_predict_fast's export until now: argmax over the class axis in slabs of 2^24 voxels (on the CPU,
    torch reduces that outermost axis with strided reads), then the label map resampled and un-cropped as now."""
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

    from nnunetv2_uda.inference.label_resampling import resample_label_map

    labels = torch.empty(logits.shape[1:], dtype=torch.uint8, device=logits.device)
    slab = max(1, 2 ** 24 // int(np.prod(logits.shape[2:])))
    for start in range(0, logits.shape[1], slab):
        labels[start:start + slab] = logits[:, start:start + slab].argmax(0)
    labels = resample_label_map(labels, properties["shape_after_cropping_and_before_resampling"])
    full = torch.zeros(tuple(properties["shape_before_cropping"]), dtype=labels.dtype, device=labels.device)
    full = insert_crop_into_image(full, labels, properties["bbox_used_for_cropping"])
    return full.cpu().numpy().transpose(predictor.plans_manager.transpose_backward)


def phase_case(kind: str, model_folder: str, image: str, device: str, step_size: float, workdir: str) -> dict:
    """One case, image file to written segmentation, with each step's time: ``after`` = nnUNetPredictorFast now;
    ``before`` = the fast predictor until now (nnU-Net's preprocessor with torch input resampling, which also fills
    holes in the nonzero mask with scipy and resamples a segmentation of it; the network; argmax in slabs; nnU-Net's
    writer; one after the other)."""
    predictor = _predictor(model_folder, device, step_size)
    output = str(Path(workdir) / f"case_{kind}" / "case")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    if kind == "after":
        start = time.perf_counter()
        predictor.predict_from_files([[image]], [output])
        wall = time.perf_counter() - start
        return {"wall_s": wall, **{k: v for k, v in predictor.case_timings[0].items() if k.endswith("_s")}}
    from nnunetv2_uda.inference.input_checks import check_case_files

    configuration = predictor.preprocessing_configuration()
    reader = predictor.plans_manager.image_reader_writer_class()
    times, started = {}, time.perf_counter()
    start = started
    check_case_files([image], predictor.dataset_json)
    images, properties = reader.read_images([image])
    times["read_s"] = time.perf_counter() - start
    start = time.perf_counter()
    data, _, properties = configuration.preprocessor_class(verbose=False).run_case_npy(
        images, None, properties, predictor.plans_manager, configuration, predictor.dataset_json)
    data = torch.from_numpy(data).to(dtype=torch.float32, memory_format=torch.contiguous_format)
    times["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    logits = predictor.predict_logits_from_preprocessed_data(data)
    _sync(device)
    times["network_s"] = time.perf_counter() - start
    start = time.perf_counter()
    segmentation = _segmentation_as_before(logits, predictor, properties)
    times["export_s"] = time.perf_counter() - start
    start = time.perf_counter()
    reader.write_seg(segmentation, output + predictor.dataset_json["file_ending"], properties)
    times["write_s"] = time.perf_counter() - start
    return {"wall_s": time.perf_counter() - started, **times}


def run_phase(name: str, extra: list[str], env: dict) -> dict:
    """Each phase in a fresh interpreter, so peaks do not carry over."""
    out = subprocess.run([sys.executable, __file__, "--phase", name, *extra], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ sections
def fast_timed(command: list[str], inputs: Path, output: Path, env: dict, label: str) -> dict:
    """``nnUNetv2_predict_fast`` with ``--timings``: the measured run and the command's own phase times."""
    timings_file = output.parent / f"{output.name}_timings.json"
    measured = run_measured([*command, "-i", str(inputs), "-o", str(output), "--timings", str(timings_file)], env,
                            label)
    timings = json.loads(timings_file.read_text())
    cases = timings["cases"]
    first = cases[0]
    measured["cases"] = cases
    measured["network_sum_s"] = sum(case["network_s"] for case in cases)
    measured["startup_s"] = (timings["first_network_call_unix"] - measured["launched_unix"] - first["read_s"]
                             - first["preprocess_s"])
    return measured


def startup(command: list[str], workdir: Path, spacing: tuple[float, ...], env: dict) -> dict:
    """Section 2, on a small volume: best of three, and every run, beside a fresh interpreter's ``import torch``."""
    small = synthetic_folder(workdir / "input_small", STARTUP_SHAPE, spacing, 1)
    runs = [fast_timed(command, small, workdir / f"out_startup_{i}", env, "start-up")["startup_s"]
            for i in range(3)]
    return {"startup_s": min(runs), "startup_runs_s": runs, "import_torch_s": best_import_seconds("torch", env),
            "import_predictor_s": best_import_seconds("nnunetv2_uda.inference.predictor", env)}


def report_startup(s: dict) -> None:
    print("\n--- 2. start-up: launch -> first network call, less the first case's read and preprocessing")
    print(f"nnUNetv2_predict_fast {s['startup_s']:.2f} s (best of {', '.join(f'{t:.2f}' for t in s['startup_runs_s'])})"
          f"   [<= 2 s]; for scale, a fresh interpreter importing torch {s['import_torch_s']:.2f} s, importing the "
          f"predictor module {s['import_predictor_s']:.2f} s (best of three each)")


def overlap_per_label(a: np.ndarray, b: np.ndarray) -> dict[int, tuple[int, int]]:
    """Label -> (2 |A and B|, |A| + |B|), the two sums behind a Dice, so that cases can be pooled."""
    counts = {}
    for label in sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0}):
        x, y = a == label, b == label
        counts[int(label)] = (int(2 * np.logical_and(x, y).sum()), int(x.sum() + y.sum()))
    return counts


def compare_outputs(stock_folder: Path, fast_folder: Path) -> dict:
    """Dice per label between the two predictors' label maps: per case, and pooled over all cases (each organ's
    voxels summed first, so a few-voxel fragment in one case does not dominate as it does per case)."""
    import SimpleITK as sitk

    cases, pooled = {}, {}
    for stock_file in sorted(stock_folder.glob("*.nii.gz")):
        stock = sitk.ReadImage(str(stock_file))
        fast = sitk.ReadImage(str(fast_folder / stock_file.name))
        assert stock.GetSize() == fast.GetSize() and np.allclose(stock.GetSpacing(), fast.GetSpacing()), stock_file
        counts = overlap_per_label(sitk.GetArrayFromImage(stock), sitk.GetArrayFromImage(fast))
        cases[stock_file.name] = {label: both / total for label, (both, total) in counts.items()}
        for label, (both, total) in counts.items():
            sums = pooled.setdefault(label, [0, 0])
            sums[0], sums[1] = sums[0] + both, sums[1] + total
    return {"cases": cases, "pooled": {label: both / total for label, (both, total) in sorted(pooled.items())},
            "pooled_voxels": {label: total for label, (_, total) in sorted(pooled.items())}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="Default: cuda")
    parser.add_argument("--shape", nargs=3, type=int, default=(100, 512, 512), metavar=("Z", "Y", "X"),
                        help="Volume size of sections 1 and 3 (z y x). Default: 100 512 512")
    parser.add_argument("--spacing", nargs=3, type=float, default=(6.0, 0.8, 0.8), metavar=("Z", "Y", "X"),
                        help="Spacing of every synthetic volume in mm (z y x). Default: 6 0.8 0.8")
    parser.add_argument("--folder-shape", nargs=3, type=int, default=None, metavar=("Z", "Y", "X"),
                        help="Volume size of section 4 (a size where the real network runs in reasonable time). "
                             "Default: --shape")
    parser.add_argument("--folder-cases", type=int, default=10, help="Cases in section 4 (0: skip). Default: 10")
    parser.add_argument("--step-size", type=float, default=0.5, help="Tile step for both predictors. Default: 0.5")
    parser.add_argument("--trivial-network", action="store_true",
                        help="Leave the network out of sections 1 and 3 (a trivial network of the same output "
                             "shape stands in), so that they run on a CPU at full size")
    parser.add_argument("--no-stock", action="store_true",
                        help="Skip stock nnUNetv2_predict and its export step (slow on a CPU at full size)")
    parser.add_argument("--model-folder", type=Path, default=None,
                        help="Trained nnU-Net results folder (trainer__plans__configuration, fold 'all'). Default: "
                             "a randomly initialized small 3d_fullres network")
    parser.add_argument("--images", type=Path, default=None,
                        help="Folder of images (<case>_0000.nii.gz) to predict with both commands and compare "
                             "(per-label Dice). Default: only the synthetic volumes")
    parser.add_argument("--label-resampling", default="nearest", choices=("nearest", "linear"),
                        help="nnUNetv2_predict_fast's --label_resampling for the end-to-end and agreement runs (the "
                             "export-step timing always uses nearest). Default: nearest")
    parser.add_argument("--input-resampling", default="torch", choices=("torch", "nnunet"),
                        help="nnUNetv2_predict_fast's --input_resampling for the end-to-end and agreement runs "
                             "('nnunet' preprocesses exactly as stock does). Default: torch")
    parser.add_argument("--startup-only", action="store_true", help="Run section 2 (start-up) alone")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to work. Default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this JSON file")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--image", default=None, help=argparse.SUPPRESS)
    return parser


def run_phase_from_arguments(args: argparse.Namespace) -> dict:
    model = str(args.model_folder)
    if args.phase == "network":
        return phase_network(model, args.image, args.device, args.step_size, str(args.workdir))
    if args.phase in ("before", "after"):
        return phase_case(args.phase, model, args.image, args.device, args.step_size, str(args.workdir))
    return phase_export(args.phase, model, args.device, str(args.workdir))


def main() -> None:
    args = build_parser().parse_args()
    if args.phase is not None:  # internal: one measured step in a fresh interpreter
        print(json.dumps(run_phase_from_arguments(args)))
        return

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_inference_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "nnUNet_raw": str(workdir / "raw"), "nnUNet_preprocessed": str(workdir / "preprocessed"),
           "nnUNet_results": str(workdir / "results"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_FOLDER), os.environ.get("PYTHONPATH")]))}
    os.environ.update(env)
    model, trivial = build_random_small_model(workdir, tuple(args.spacing))
    if args.model_folder is not None:
        model = args.model_folder.resolve()
    single = trivial if args.trivial_network else model
    spacing = tuple(args.spacing)

    def commands(model_folder: Path) -> dict[str, list[str]]:
        results_root, dataset, trainer, plans, configuration = model_identity(model_folder)
        common = ["-d", dataset, "-tr", trainer, "-p", plans, "-c", configuration, "-f", "all",
                  "-step_size", str(args.step_size), "--disable_tta", "-device", args.device,
                  "--disable_progress_bar"]
        return {"stock": ["nnUNetv2_predict", *common, "-npp", "1", "-nps", "1"],
                "fast": ["nnUNetv2_predict_fast", *common, "--label_resampling", args.label_resampling,
                         "--input_resampling", args.input_resampling, "--overwrite"]}  # a reused --workdir

    env["nnUNet_results"] = model_identity(model)[0]
    figures: dict = {"device": args.device, "step_size": args.step_size, "model": str(model),
                     "trivial_network": args.trivial_network, "shape": list(args.shape), "spacing": list(spacing),
                     "label_resampling": args.label_resampling, "input_resampling": args.input_resampling}

    if args.startup_only:
        figures["startup"] = startup(commands(model)["fast"], workdir, spacing, env)
        report_startup(figures["startup"])
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2))
        return

    # 1. one case end to end, the network alone, the export step alone
    one_case = synthetic_folder(workdir / "input_one", tuple(args.shape), spacing, 1)
    timed_image = str(one_case / "bench_000_0000.nii.gz")
    single_env = {**env, "nnUNet_results": model_identity(single)[0]}
    figures["fast_end_to_end"] = fast_timed(commands(single)["fast"], one_case, workdir / "out_fast", single_env,
                                            "fast, one case")
    phase_args = ["--model-folder", str(single), "--device", args.device, "--workdir", str(workdir),
                  "--step-size", str(args.step_size)]
    figures["network_only"] = run_phase("network", [*phase_args, "--image", timed_image], single_env)
    figures["export_fast"] = run_phase("fast", phase_args, single_env)
    if not args.no_stock:
        figures["stock_end_to_end"] = run_measured(
            [*commands(single)["stock"], "-i", str(one_case), "-o", str(workdir / "out_stock")], single_env,
            "stock, one case")
        figures["export_stock"] = run_phase("stock", phase_args, single_env)
        figures["agreement_timed_image"] = compare_outputs(workdir / "out_stock", workdir / "out_fast")

    figures["startup"] = startup(commands(model)["fast"], workdir, spacing, env)

    # 3. per-case work around the network, before and after
    case_args = [*phase_args, "--step-size", "1.0", "--image", timed_image]  # the network's time is left out anyway
    figures["case_before"] = run_phase("before", case_args, single_env)
    figures["case_after"] = run_phase("after", case_args, single_env)

    # 4. a folder in one call
    if args.folder_cases > 0:
        folder = synthetic_folder(workdir / "input_folder", tuple(args.folder_shape or args.shape), spacing,
                                  args.folder_cases)
        figures["folder"] = fast_timed(commands(model)["fast"], folder, workdir / "out_folder", env,
                                       f"fast, {args.folder_cases} cases")
        figures["folder"]["shape"] = list(args.folder_shape or args.shape)

    if args.images is not None:
        for label, command in commands(model).items():
            run_measured([*command, "-i", str(args.images), "-o", str(workdir / f"all_{label}")], env,
                         f"{label} on {args.images}")
        figures["agreement"] = compare_outputs(workdir / "all_stock", workdir / "all_fast")
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


def _phases(measured: dict) -> str:
    return ", ".join(f"{key[:-2]} {value:.2f}" for key, value in measured.items()
                     if key.endswith("_s") and key != "wall_s")


def report(f: dict) -> None:
    fast, network = f["fast_end_to_end"], f["network_only"]
    network_note = " (trivial network)" if f["trivial_network"] else ""
    print(f"\n=== inference speed ({f['device']}, volume {'x'.join(map(str, f['shape']))}, tile step "
          f"{f['step_size']}, network output {network['network_shape']}{network_note})")
    print("\n--- 1. one case")
    rows = [("nnUNetv2_predict_fast", fast)] + ([("nnUNetv2_predict", f["stock_end_to_end"])]
                                                if "stock_end_to_end" in f else [])
    for name, m in rows:
        gpu = (f", GPU peak {m['gpu_peak_mb']:.0f} MB, area {m['gpu_area_mb_s']:.0f} MB*s"
               if f["device"] == "cuda" else "")
        print(f"{name:24s} wall {m['wall_s']:8.2f} s, host peak (process tree, PSS) {m['host_peak_mb']:8.0f} MB{gpu}")
    print(f"  fast, phases (s): start-up {fast['startup_s']:.2f}, {_phases(fast['cases'][0])}")
    print(f"{'network (sliding window)':24s} wall {network['wall_s']:8.2f} s")
    exports = [("export fast", f["export_fast"])] + ([("export stock", f["export_stock"])]
                                                     if "export_stock" in f else [])
    for name, m in exports:
        device = f", device peak {m['device_peak_mb']:.0f} MB" if "device_peak_mb" in m else ""
        print(f"{name:24s} wall {m['wall_s']:8.2f} s, host peak {m['host_peak_mb']:8.0f} MB{device}")
    if "stock_end_to_end" in f:
        stock, es, ef = f["stock_end_to_end"], f["export_stock"], f["export_fast"]
        print(f"export speed-up stock/fast      {es['wall_s'] / ef['wall_s']:7.1f}x")
        print(f"end-to-end stock/fast           {stock['wall_s'] / fast['wall_s']:7.2f}x")

    report_startup(f["startup"])

    before, after = f["case_before"], f["case_after"]
    around_before = before["wall_s"] - before["network_s"]
    around_after = after["wall_s"] - after["network_s"]
    print(f"\n--- 3. per-case work around the network ({'x'.join(map(str, f['shape']))}{network_note})")
    print(f"before: {around_before:7.2f} s  ({_phases(before)})")
    print(f"now:    {around_after:7.2f} s  ({_phases(after)})")
    print(f"now / before                    {around_after / around_before:7.3f}   [<= 0.25]")

    if "folder" in f:
        folder = f["folder"]
        count = len(folder["cases"])
        print(f"\n--- 4. a folder of {count} volumes of {'x'.join(map(str, folder['shape']))} in one call")
        print(f"end to end {folder['wall_s']:.2f} s, summed network {folder['network_sum_s']:.2f} s, "
              f"per case {folder['wall_s'] / count:.2f} s end to end and {folder['network_sum_s'] / count:.2f} s "
              f"network; start-up {folder['startup_s']:.2f} s")
        print(f"end to end / summed network     {folder['wall_s'] / folder['network_sum_s']:7.3f}   [<= 1.3]")
        mean = {key: np.mean([case[key] for case in folder["cases"]]) for key in folder["cases"][0]
                if key.endswith("_s")}
        print("  mean per case (s): " + ", ".join(f"{key[:-2]} {value:.2f}" for key, value in mean.items()))
    for key in ("agreement_timed_image", "agreement"):
        if key in f:
            pooled = f[key]["pooled"]
            print(f"\n{key}: Dice fast vs stock per label, pooled over {len(f[key]['cases'])} case(s)   [>= 0.97]")
            print("  " + ", ".join(f"{label}:{dice:.3f} ({f[key]['pooled_voxels'][label]} vox)"
                                   for label, dice in pooled.items()))


if __name__ == "__main__":
    main()

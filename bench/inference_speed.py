"""Stock nnUNetv2_predict versus nnUNetv2_predict_fast on one MRI-sized volume, side by side in one run.

Prints wall time and peak memory for: the stock command, the fast command, the export step alone (logits at network
resolution -> written segmentation, stock vs fast), the network's own sliding-window time, and the fixed costs every
one-case call pays whatever the predictor (interpreter and imports with device start-up, model loading, reading
and preprocessing the image, writing the segmentation): the network plus the unavoidable part of them is the floor
that the ``fast end-to-end / network`` ratio is held against. On CUDA it also samples
GPU memory every 0.1 s (nvidia-smi, as FLARE does) and reports its area under the curve (MB*s). Ratios are computed
from the same run. With ``--model-folder`` (a trained nnU-Net results folder) and ``--images`` it predicts those
images with both commands and reports per-label Dice between them; otherwise it builds a randomly initialized model of
the paper's small 3d_fullres network (patch 40x224x192) and a synthetic volume (default 100x512x512 at 6x0.8x0.8 mm).

    python bench/inference_speed.py --device cuda
    python bench/inference_speed.py --device cpu --shape 40 192 192       # CPU-sized
    python bench/inference_speed.py --device cuda --model-folder $nnUNet_results/Dataset801_BTCVCT/\
nnUNetTrainerUDASmall__nnUNetPlansUDASmall__3d_fullres --images ../shared/data/Dataset802_CHAOST2/imagesTr

Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from nnunetv2_uda.evaluation.profiling import process_tree_memory_mb

BENCH_DATASET_ID = 987
BENCH_DATASET = f"Dataset{BENCH_DATASET_ID}_BenchFast"
BENCH_TRAINER, BENCH_PLANS, BENCH_CONFIGURATION = "nnUNetTrainerUDASmall", "nnUNetPlansUDASmall", "3d_fullres"
NUM_CLASSES = 14  # background + the 13 FLARE organs


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
    """Runs a command; wall time, peak PSS summed over its process tree (0.1 s samples), GPU memory curve."""
    baseline = gpu_baseline_mb()
    print(f"[{label}] {' '.join(args)}", flush=True)
    peak_mb = 0.0
    with GpuMemorySampler() as sampler:
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
    return {"wall_s": wall, "host_peak_mb": peak_mb, **sampler.summary(baseline), "output": "".join(output)}


def _reset_host_peak() -> int:
    """Resets this process's VmHWM (Linux) and returns the current RSS in kB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _rss_kb(os.getpid())


def _host_peak_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


# ------------------------------------------------------------------------------------------------ model and data
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


def build_random_small_model(root: Path, spacing_zyx: tuple[float, ...]) -> Path:
    """Plans the paper's small network with nnUNetPlannerUDASmall from a written fingerprint (no preprocessing) and
    saves a randomly initialized checkpoint where nnUNetv2_predict looks for it."""
    import torch
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
    model = root / "results" / BENCH_DATASET / f"{BENCH_TRAINER}__{BENCH_PLANS}__{BENCH_CONFIGURATION}"
    (model / "fold_all").mkdir(parents=True, exist_ok=True)
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    (model / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    torch.save({"network_weights": network.state_dict(), "trainer_name": BENCH_TRAINER,
                "init_args": {"configuration": BENCH_CONFIGURATION}, "inference_allowed_mirroring_axes": None},
               model / "fold_all" / "checkpoint_final.pth")
    print(f"random small model: patch {configuration.patch_size}, spacing {configuration.spacing}")
    return model


def model_identity(model_folder: Path) -> tuple[str, str, str, str, str]:
    """(nnUNet_results, dataset, trainer, plans, configuration) of a results folder trainer__plans__configuration."""
    trainer, plans, configuration = model_folder.name.split("__")
    return str(model_folder.parent.parent), model_folder.parent.name, trainer, plans, configuration


# ------------------------------------------------------------------------------------------- in-process phases
def phase_network(model_folder: str, image: str, device: str, step_size: float, workdir: str) -> dict:
    """The sliding window alone (what no predictor can avoid); saves the logits for the export phases."""
    import torch

    from nnunetv2_uda.inference.predictor import nnUNetPredictorFast

    predictor = nnUNetPredictorFast(tile_step_size=step_size, device=torch.device(device), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model_folder, ("all",))
    item = next(predictor._preprocess_cases([[image]], None, None))
    _sync(device)
    start = time.perf_counter()
    logits = predictor.predict_logits_from_preprocessed_data(item["data"])
    _sync(device)
    seconds = time.perf_counter() - start
    np.save(Path(workdir) / "logits.npy", logits.cpu().numpy())
    with open(Path(workdir) / "properties.pkl", "wb") as f:
        pickle.dump(item["data_properties"], f)
    return {"wall_s": seconds, "network_shape": list(logits.shape)}


def phase_export(kind: str, model_folder: str, device: str, workdir: str) -> dict:
    """Export of the saved logits: nnU-Net's export_prediction_from_logits (kind 'stock', on the CPU as in
    nnUNetv2_predict's export workers) or ours (kind 'fast', logits on the compute device as the fast predictor
    leaves them)."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_uda.inference.export import export_prediction_from_logits_fast

    plans_manager = PlansManager(load_json(str(Path(model_folder) / "plans.json")))
    dataset_json = load_json(str(Path(model_folder) / "dataset.json"))
    configuration_name = Path(model_folder).name.split("__")[-1]
    configuration = plans_manager.get_configuration(configuration_name)
    with open(Path(workdir) / "properties.pkl", "rb") as f:
        properties = pickle.load(f)
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


def phase_fixed_costs(model_folder: str, image: str, device: str, step_size: float, workdir: str) -> dict:
    """What a one-case call pays besides the network and the export, each timed on its own in this fresh interpreter
    (the interpreter's start and imports are timed from outside, in ``main``)."""
    import torch

    from nnunetv2_uda.inference.predictor import nnUNetPredictorFast

    start = time.perf_counter()
    if device == "cuda":
        torch.zeros(1, device=device)
        torch.cuda.synchronize()
    device_start = time.perf_counter() - start
    predictor = nnUNetPredictorFast(tile_step_size=step_size, device=torch.device(device), allow_tqdm=False)
    start = time.perf_counter()
    predictor.initialize_from_trained_model_folder(model_folder, ("all",))
    _sync(device)
    model_load = time.perf_counter() - start
    reader_writer = predictor.plans_manager.image_reader_writer_class()
    start = time.perf_counter()
    images, properties = reader_writer.read_images([image])
    read = time.perf_counter() - start
    start = time.perf_counter()
    next(predictor._preprocess_cases([[image]], None, None))
    _sync(device)
    read_and_preprocess = time.perf_counter() - start
    segmentation = np.random.default_rng(0).integers(0, 14, images.shape[1:], dtype=np.uint8)
    start = time.perf_counter()
    reader_writer.write_seg(segmentation, str(Path(workdir) / "fixed_cost_write.nii.gz"), properties)
    write = time.perf_counter() - start
    return {"device_start_s": device_start, "model_load_s": model_load, "read_s": read,
            "preprocess_s": read_and_preprocess - read, "write_s": write}


def time_imports(env: dict) -> float:
    """Seconds for a fresh interpreter to import torch and the fast predictor (best of three: the first run pays
    for a cold file cache)."""
    command = [sys.executable, "-c", "import torch, nnunetv2_uda.inference.predictor"]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def run_phase(name: str, extra: list[str], env: dict) -> dict:
    """Each phase in a fresh interpreter, so peaks do not carry over."""
    out = subprocess.run([sys.executable, __file__, "--phase", name, *extra], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------- main
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
                        help="Synthetic volume size (z y x). Default: 100 512 512")
    parser.add_argument("--spacing", nargs=3, type=float, default=(6.0, 0.8, 0.8), metavar=("Z", "Y", "X"),
                        help="Synthetic volume spacing in mm (z y x). Default: 6 0.8 0.8")
    parser.add_argument("--step-size", type=float, default=0.5, help="Tile step for both predictors. Default: 0.5")
    parser.add_argument("--model-folder", type=Path, default=None,
                        help="Trained nnU-Net results folder (trainer__plans__configuration, fold 'all'). Default: "
                             "a randomly initialized small 3d_fullres network")
    parser.add_argument("--images", type=Path, default=None,
                        help="Folder of images (<case>_0000.nii.gz) to predict with both commands and compare "
                             "(per-label Dice). Default: only the synthetic volume")
    parser.add_argument("--label-resampling", default="nearest", choices=("nearest", "linear"),
                        help="nnUNetv2_predict_fast's --label_resampling for the end-to-end and agreement runs (the "
                             "export-step timing always uses nearest). Default: nearest")
    parser.add_argument("--input-resampling", default="torch", choices=("torch", "nnunet"),
                        help="nnUNetv2_predict_fast's --input_resampling for the end-to-end and agreement runs "
                             "('nnunet' resamples the input exactly as stock does). Default: torch")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to work. Default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this JSON file")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--image", default=None, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.phase is not None:  # internal: one measured step in a fresh interpreter
        if args.phase == "network":
            result = phase_network(str(args.model_folder), args.image, args.device, args.step_size, str(args.workdir))
        elif args.phase == "fixed_costs":
            result = phase_fixed_costs(str(args.model_folder), args.image, args.device, args.step_size,
                                       str(args.workdir))
        else:
            result = phase_export(args.phase, str(args.model_folder), args.device, str(args.workdir))
        print(json.dumps(result))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_inference_"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "nnUNet_raw": str(workdir / "raw"), "nnUNet_preprocessed": str(workdir / "preprocessed"),
           "nnUNet_results": str(workdir / "results")}
    if args.model_folder is None:
        os.environ.update(env)
        args.model_folder = build_random_small_model(workdir, tuple(args.spacing))
    results_root, dataset, trainer, plans, configuration = model_identity(args.model_folder.resolve())
    env["nnUNet_results"] = results_root

    inputs = workdir / "input"
    inputs.mkdir(exist_ok=True)
    if args.images is None:
        write_synthetic_mri(inputs / "bench_000_0000.nii.gz", tuple(args.shape), tuple(args.spacing))
        source = inputs
    else:
        source = args.images
        first = sorted(source.glob("*_0000.nii.gz"))[0]
        shutil.copy(first, inputs / first.name)
    timed_image = str(sorted(inputs.glob("*_0000.nii.gz"))[0])

    common = ["-d", dataset, "-tr", trainer, "-p", plans, "-c", configuration, "-f", "all",
              "-step_size", str(args.step_size), "--disable_tta", "-device", args.device, "--disable_progress_bar"]
    figures: dict = {"device": args.device, "step_size": args.step_size, "model": str(args.model_folder),
                     "label_resampling": args.label_resampling, "input_resampling": args.input_resampling,
                     "timed_image": timed_image}
    commands = {"stock": ["nnUNetv2_predict", *common, "-npp", "1", "-nps", "1"],
                "fast": ["nnUNetv2_predict_fast", *common, "-npp", "1", "-nps", "1",
                         "--label_resampling", args.label_resampling, "--input_resampling", args.input_resampling]}
    for label, command in commands.items():
        measured = run_measured([*command, "-i", str(inputs), "-o", str(workdir / f"out_{label}")], env,
                                f"{label} end-to-end")
        figures[f"{label}_end_to_end"] = {k: v for k, v in measured.items() if k != "output"}
    phase_args = ["--model-folder", str(args.model_folder), "--device", args.device, "--workdir", str(workdir),
                  "--step-size", str(args.step_size)]
    figures["network_only"] = run_phase("network", [*phase_args, "--image", timed_image], env)
    figures["export_stock"] = run_phase("stock", phase_args, env)
    figures["export_fast"] = run_phase("fast", phase_args, env)
    figures["fixed_costs"] = {"imports_s": time_imports(env),
                              **run_phase("fixed_costs", [*phase_args, "--image", timed_image], env)}
    figures["agreement_timed_image"] = compare_outputs(workdir / "out_stock", workdir / "out_fast")

    if args.images is not None:
        for label, command in commands.items():
            measured = run_measured([*command, "-i", str(source), "-o", str(workdir / f"all_{label}")], env,
                                    f"{label} on {source}")
            figures[f"{label}_all_images_s"] = measured["wall_s"]
        figures["agreement"] = compare_outputs(workdir / "all_stock", workdir / "all_fast")
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


def report(f: dict) -> None:
    stock, fast, network = f["stock_end_to_end"], f["fast_end_to_end"], f["network_only"]
    es, ef = f["export_stock"], f["export_fast"]
    print(f"\n=== inference speed ({f['device']}, tile step {f['step_size']}, "
          f"network output {network['network_shape']})")
    for name, m in (("nnUNetv2_predict", stock), ("nnUNetv2_predict_fast", fast)):
        gpu = (f", GPU peak {m['gpu_peak_mb']:.0f} MB, area {m['gpu_area_mb_s']:.0f} MB*s"
               if f["device"] == "cuda" else "")
        print(f"{name:24s} wall {m['wall_s']:8.2f} s, host peak (process tree, PSS) {m['host_peak_mb']:8.0f} MB{gpu}")
    print(f"{'network (sliding window)':24s} wall {network['wall_s']:8.2f} s")
    for name, m in (("export stock", es), ("export fast", ef)):
        device = f", device peak {m['device_peak_mb']:.0f} MB" if "device_peak_mb" in m else ""
        print(f"{name:24s} wall {m['wall_s']:8.2f} s, host peak {m['host_peak_mb']:8.0f} MB{device}")
    fast_export_memory = ef["host_peak_mb"] + ef.get("device_peak_mb", 0.0)
    print("\n--- ratios (targets in brackets)")
    print(f"export speed-up stock/fast      {es['wall_s'] / ef['wall_s']:7.1f}x   [>= 10x]")
    print(f"export peak memory stock/fast   {es['host_peak_mb'] / max(fast_export_memory, 1e-3):7.1f}x   [>= 5x]"
          f"  (fast: host + device)")
    print(f"end-to-end stock/fast           {stock['wall_s'] / fast['wall_s']:7.2f}x   [> 1x]")
    print(f"fast end-to-end / network       {fast['wall_s'] / network['wall_s']:7.2f}x   [<= 1.3x]")
    if "fixed_costs" in f:
        costs = f["fixed_costs"]
        print("\n--- fixed costs of a one-case call (s): " + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in costs.items()))
        floor = network["wall_s"] + costs["imports_s"] + costs["device_start_s"] + costs["read_s"] + costs["write_s"]
        print(f"floor: network + imports + device start + read + write = {floor:.2f} s "
              f"({floor / network['wall_s']:.2f}x the network: the best any predictor reaches in one call)")
        print(f"fast end-to-end / floor         {fast['wall_s'] / floor:7.2f}x   "
              f"(the rest: model load, preprocessing, export, hand-offs)")
    for key in ("agreement_timed_image", "agreement"):
        if key in f:
            pooled = f[key]["pooled"]
            print(f"{key}: Dice fast vs stock per label, pooled over {len(f[key]['cases'])} case(s)   [>= 0.97]")
            print("  " + ", ".join(f"{label}:{dice:.3f} ({f[key]['pooled_voxels'][label]} vox)"
                                   for label, dice in pooled.items()))
            for case, scores in f[key]["cases"].items():
                print(f"  {case}: " + ", ".join(f"{k}:{v:.3f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()

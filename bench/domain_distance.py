"""Domain distance between CT and real MRI, and between fake MRI (after translation) and real MRI.

For each data pair (synthetic phantoms made with nnUNetv2_uda_make_phantoms, and the real BTCV CT / CHAOS T2 data in
--real_data, by default ../shared/data), the benchmark trains a translator (ASIT and, with --modes, the
plain-CycleGAN ablation), translates the CT dataset and prints two distances in raw (normalized) intensity space and
in anatomy space:

- W1: 1D Wasserstein distance between the pooled voxel intensity distributions;
- patch SWD: sliced Wasserstein distance between 5x5 in-plane patch distributions (64 random projections), which
  also sees texture and edges.

All images are compared as axial slices on a common in-plane grid (the translator's). Translation should lower the
distance to real MRI. Usage:

    python bench/domain_distance.py [--data phantoms real] [--iterations 300] [--modes asit cyclegan]
    python bench/domain_distance.py --data real --modes asit --generators unet --iterations 2000
    python bench/domain_distance.py --data real --modes asit --generators unet --iterations 2000 --lambda_anatomy 5
    python bench/domain_distance.py --data real --translated asit=FOLDER cyclegan=FOLDER   # measure existing fakes
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from nnunetv2_uda.translation.networks import GENERATORS
from nnunetv2_uda.translation.raw_dataset import open_raw_dataset
from nnunetv2_uda.translation.settings import TranslatorSettings
from nnunetv2_uda.translation.slices import extract_slices
from nnunetv2_uda.translation.translate import translate_dataset
from nnunetv2_uda.translation.translator import train_translator

DEFAULT_REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CT_DATASET = "Dataset801_BTCVCT"  # the pair of bench/ct2mr_real.py
MRI_DATASET = "Dataset802_CHAOST2"


def slices_in_both_spaces(folder: Path, modality: str, spacing: float, size: int, per_case: int):
    """(raw normalized intensity, anatomy space) slices, (N, size, size) each."""
    slices = extract_slices(open_raw_dataset(folder), modality, "asit", spacing, size, per_case).float()
    anatomy_channel = 0 if modality == "ct" else 1
    return slices[:, 1 - anatomy_channel], slices[:, anatomy_channel]


def intensity_w1(a: torch.Tensor, b: torch.Tensor, samples: int = 200_000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    a, b = a.flatten().numpy(), b.flatten().numpy()
    return float(wasserstein_distance(rng.choice(a, samples), rng.choice(b, samples)))


def patch_swd(a: torch.Tensor, b: torch.Tensor, patch: int = 5, projections: int = 64, samples: int = 50_000,
              seed: int = 0) -> float:
    generator = torch.Generator().manual_seed(seed)

    def patches(x):
        unfolded = F.unfold(x[:, None], patch).transpose(1, 2).reshape(-1, patch * patch)
        return unfolded[torch.randint(len(unfolded), (samples,), generator=generator)]

    pa, pb = patches(a), patches(b)
    directions = torch.randn(patch * patch, projections, generator=generator)
    directions /= directions.norm(dim=0, keepdim=True)
    projected_a, projected_b = (pa @ directions).sort(0).values, (pb @ directions).sort(0).values
    return float((projected_a - projected_b).abs().mean())


def distances(a, b) -> tuple[float, float, float, float]:
    (raw_a, anat_a), (raw_b, anat_b) = a, b
    return intensity_w1(raw_a, raw_b), patch_swd(raw_a, raw_b), intensity_w1(anat_a, anat_b), patch_swd(anat_a, anat_b)


def run_pair(name: str, ct: Path, mri: Path, work: Path, args) -> None:
    geometry = (args.inplane_spacing, args.slice_size, args.slices_per_case)
    real_mri = slices_in_both_spaces(mri, "mri", *geometry)
    rows = [("CT vs real MRI", distances(slices_in_both_spaces(ct, "ct", *geometry), real_mri))]
    for mode, fake in args.translated.items():
        rows.append((f"fake MRI ({mode}) vs real MRI", distances(slices_in_both_spaces(Path(fake), "mri", *geometry),
                                                               real_mri)))
    trained_pairs = [] if args.translated else [(m, g) for m in args.modes for g in args.generators]
    for mode, generator in trained_pairs:
        start = time.perf_counter()
        label = f"{mode}, {generator} generator"
        settings = TranslatorSettings(iterations=args.iterations, slice_size=args.slice_size, generator=generator,
                                      lambda_anatomy=args.lambda_anatomy, inplane_spacing=args.inplane_spacing,
                                      max_slices_per_case=args.slices_per_case)
        translator = train_translator(ct, mri, work / f"translator_{name}_{mode}_{generator}", settings, mode=mode,
                                      checkpoint_every=max(1, args.iterations // 4), device=args.device)
        fake = work / f"fake_{name}_{mode}_{generator}"
        translate_dataset(translator, ct, fake, device=args.device, mri_dataset_folder=mri, overwrite=True)
        print(f"[{name}] {label}: trained and translated in {time.perf_counter() - start:.0f} s; panel: "
              f"{fake / 'translation_panel.png'}")
        rows.append((f"fake MRI ({label}) vs real MRI", distances(slices_in_both_spaces(fake, "mri", *geometry),
                                                                real_mri)))
    trained = "translators given" if args.translated else f"{args.iterations} translator iterations"
    print(f"\n[{name}] domain distance to real MRI ({trained})")
    print(f"{'':48s}{'raw W1':>10s}{'raw SWD':>10s}{'anat W1':>10s}{'anat SWD':>10s}")
    for label, values in rows:
        print(f"{label:48s}" + "".join(f"{v:10.4f}" for v in values))
    baseline = rows[0][1]
    for label, values in rows[1:]:
        ratios = ", ".join(f"{v / max(b, 1e-12):.2f}" for v, b in zip(values, baseline, strict=True))
        print(f"  {label}: ratio to CT (raw W1, raw SWD, anat W1, anat SWD) = {ratios}")


def make_phantoms(work: Path, args) -> tuple[Path, Path]:
    subprocess.run(["nnUNetv2_uda_make_phantoms", str(work / "phantoms"), "--num_ct", str(args.phantom_cases),
                    "--num_mri", str(args.phantom_cases), "--shape", *map(str, args.phantom_shape)], check=True)
    ct = Path(glob.glob(str(work / "phantoms" / "Dataset991_*"))[0])
    mri = Path(glob.glob(str(work / "phantoms" / "Dataset992_*"))[0])
    return ct, mri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=("phantoms", "real"), default=["phantoms", "real"],
                        help="which CT/MRI pairs to measure: built-in phantoms (made on the fly) and/or the real BTCV "
                             "CT and CHAOS T2 in --real_data (skipped where absent). Default: both")
    parser.add_argument("--real_data", type=Path, default=DEFAULT_REAL_DATA,
                        help=f"folder holding {CT_DATASET} and {MRI_DATASET}. Default: {DEFAULT_REAL_DATA}")
    parser.add_argument("--modes", nargs="+", choices=("asit", "cyclegan"), default=["asit"],
                        help="translators to train and measure: asit (Sobel-CT -> MRI) and/or cyclegan (raw CT -> "
                             "MRI, the ablation). Default: asit")
    parser.add_argument("--generators", nargs="+", choices=sorted(GENERATORS), default=["resnet"],
                        help="translator generator architectures to compare (each with every mode). Default: resnet")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations per translator. Default: 300")
    parser.add_argument("--lambda_anatomy", type=float, default=0.0,
                        help="the translators' anatomy-consistency weight (nnUNetv2_uda_train_translator "
                             "--lambda_anatomy; not in the paper). Default: 0")
    parser.add_argument("--slice_size", type=int, default=128,
                        help="in-plane size (pixels) of the slices the translators train on and are measured on. "
                             "Default: 128")
    parser.add_argument("--inplane_spacing", type=float, default=2.5,
                        help="in-plane spacing (mm) the slices are resampled to. Default: 2.5")
    parser.add_argument("--slices_per_case", type=int, default=16,
                        help="axial slices sampled per case for training and measuring. Default: 16")
    parser.add_argument("--phantom_cases", type=int, default=6, help="phantom CT and MRI cases each. Default: 6")
    parser.add_argument("--phantom_shape", type=int, nargs=3, default=(32, 128, 128), metavar=("Z", "Y", "X"),
                        help="phantom volume shape. Default: 32 128 128")
    parser.add_argument("--device", default="cpu", help="torch device for the translators. Default: cpu")
    parser.add_argument("--work_folder", default=None, help="default: a temporary folder")
    parser.add_argument("--translated", nargs="+", default=None, metavar="MODE=FOLDER",
                        help="fake-MRI raw datasets made already (e.g. by nnUNetv2_uda_run's translate_<mode> steps) "
                             "to measure instead of training translators; needs exactly one --data")
    args = parser.parse_args()
    if args.translated and len(args.data) != 1:
        parser.error("--translated needs exactly one --data (the pair the fake MRI was made from)")
    if args.translated and any("=" not in item for item in args.translated):
        parser.error("--translated takes MODE=FOLDER items, e.g. asit=/path/Dataset603_UDAFakeMRIASIT")
    args.translated = dict(item.split("=", 1) for item in args.translated or [])
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.work_folder or temporary)
        work.mkdir(parents=True, exist_ok=True)
        if "phantoms" in args.data:
            run_pair("phantoms", *make_phantoms(work, args), work, args)
        if "real" in args.data:
            ct, mri = args.real_data / CT_DATASET, args.real_data / MRI_DATASET
            if ct.is_dir() and mri.is_dir():
                run_pair("real", ct, mri, work, args)
            else:
                print(f"domain_distance (real): {args.real_data} does not hold {CT_DATASET} and {MRI_DATASET}; "
                      f"skipped")


if __name__ == "__main__":
    main()

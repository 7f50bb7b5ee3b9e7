"""Turns a labeled CT raw dataset into a fake-MRI raw dataset with a trained translator (``nnUNetv2_uda_translate``).

Each case is translated slice by slice on its own grid: axial slices are resampled to the translator's in-plane
spacing, padded to a multiple of 4, passed through T_t, cropped and resampled back to the original size. Spacing,
origin, direction, case names and labels are those of the CT dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nnunetv2_uda.atomic_files import save_figure, write_json_atomically
from nnunetv2_uda.translation.anatomy_space import anatomy_space, normalize
from nnunetv2_uda.translation.networks import GENERATOR_DOWNSAMPLING, GENERATOR_MIN_SIZE, build_generator
from nnunetv2_uda.translation.raw_dataset import (
    build_dataset,
    check_label,
    copy_label,
    open_raw_dataset,
    read_volume,
    write_volume_like,
)
from nnunetv2_uda.translation.slices import domain_representations, inplane_size, resample_inplane
from nnunetv2_uda.translation.translator import (
    CHECKPOINT_FILE,
    TranslatorConfigError,
    read_checkpoint,
    read_config,
)

PANEL_FILE = "translation_panel.png"


def load_generator(translator_folder: str | os.PathLike, device: str = "cpu"):
    """T_t and the config of a finished translator; an unfinished, missing or unsafe checkpoint is refused."""
    config = read_config(translator_folder)
    checkpoint = read_checkpoint(translator_folder, config)
    if checkpoint is None:
        raise TranslatorConfigError(f"'{translator_folder}' has no {CHECKPOINT_FILE}; train it first with "
                                    f"nnUNetv2_uda_train_translator")
    if checkpoint["iteration"] < config.iterations:
        raise TranslatorConfigError(f"Translator '{translator_folder}' stopped at iteration {checkpoint['iteration']} "
                                    f"of {config.iterations}; rerun nnUNetv2_uda_train_translator to finish it")
    generator = build_generator(config.generator, config.generator_features, config.residual_blocks)
    generator.load_state_dict(checkpoint["model"]["T_t"])
    return generator.to(device).eval(), config


@torch.no_grad()
def translate_volume(generator: torch.nn.Module, source_space: np.ndarray, spacing_zyx, inplane_spacing: float,
                     device: str = "cpu", slices_per_batch: int = 8) -> np.ndarray:
    """T_t applied slice-wise to a (Z, Y, X) volume given in the translator's CT space; same shape out.

    Slices are padded with background to a multiple of 4, and to at least the generator's smallest input."""
    shape_yx = source_space.shape[1:]
    work_size = inplane_size(shape_yx, spacing_zyx[1:], inplane_spacing)
    pad_y, pad_x = (max(GENERATOR_MIN_SIZE, n + (-n) % GENERATOR_DOWNSAMPLING) - n for n in work_size)
    background = float(source_space.min())
    out = np.empty(source_space.shape, dtype=np.float32)
    for start in range(0, source_space.shape[0], slices_per_batch):
        stack = torch.from_numpy(np.ascontiguousarray(source_space[start:start + slices_per_batch]))[:, None]
        stack = resample_inplane(stack.to(device), work_size)
        stack = F.pad(stack, (0, pad_x, 0, pad_y), value=background)
        fake = generator(stack)[:, :, : work_size[0], : work_size[1]]
        out[start:start + slices_per_batch] = resample_inplane(fake, shape_yx)[:, 0].cpu().numpy()
    return out


def _middle_slice(volume: np.ndarray, label: np.ndarray | None) -> int:
    if label is not None and label.any():
        return int(np.argmax((label > 0).sum(axis=(1, 2))))
    return volume.shape[0] // 2


def write_panel(path: Path, ct: np.ndarray, sobel_ct: np.ndarray, fake_mri: np.ndarray, sobel_mri: np.ndarray | None,
                mode: str) -> Path:
    """The paper's Fig. 2 layout: CT, Sobel-CT, fake MRI, a real Sobel-MRI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(ct, "CT"), (sobel_ct, "Sobel-CT (anatomy space)"), (fake_mri, f"fake MRI ({mode})")]
    if sobel_mri is not None:
        panels.append((sobel_mri, "real Sobel-MRI"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for axis, (image, title) in zip(axes, panels, strict=True):
        low, high = np.percentile(image, (1, 99))
        axis.imshow(image, cmap="gray", vmin=low, vmax=high)
        axis.set_title(title)
        axis.axis("off")
    figure.tight_layout()
    return save_figure(figure, path, dpi=80)


def translate_dataset(translator_folder: str | os.PathLike, ct_dataset_folder: str | os.PathLike,
                      output_dataset_folder: str | os.PathLike, device: str = "cpu",
                      mri_dataset_folder: str | os.PathLike | None = None, overwrite: bool = False,
                      allow_nonfinite: bool = False) -> Path:
    """Writes the fake-MRI dataset and returns the path of its panel PNG (``translation_panel.png`` inside it).

    The dataset is built beside the output folder and put in place when complete (see
    ``raw_dataset.build_dataset``: a case with a bad image is left out and named, the others are kept). The panel's
    real Sobel-MRI comes from ``mri_dataset_folder``, else from the translator's MRI dataset if it still exists;
    without either the panel has three images.
    """
    generator, config = load_generator(translator_folder, device)
    dataset = open_raw_dataset(ct_dataset_folder)
    sobel_mri = _real_sobel_mri(mri_dataset_folder, config, allow_nonfinite)
    panel_images = []

    def write_case(case: str, output: Path) -> None:
        volume, spacing, image = read_volume(dataset.image_file(case), allow_nonfinite)
        label_file = dataset.label_file(case)
        label = None
        if label_file is not None:
            check_label(label_file)
            label = None if panel_images else read_volume(label_file)[0]
        source_space, _ = domain_representations(volume, spacing, "ct", config.mode, device)
        fake = translate_volume(generator, source_space, spacing, config.inplane_spacing, device)
        write_volume_like(fake, image, output / "imagesTr" / dataset.image_file(case).name)
        copy_label(label_file, output)
        if not panel_images:
            index = _middle_slice(volume, label)
            normalized = normalize(volume, "ct")
            panel_images.extend((normalized[index], anatomy_space(normalized, spacing, None, device)[index],
                                 fake[index]))

    def finish(output: Path, cases: list[str]) -> None:
        dataset_json = {key: value for key, value in dataset.dataset_json.items() if key not in ("modality",)}
        dataset_json.update({"channel_names": {"0": "MRI"}, "numTraining": len(cases),
                             "uda_translation": {"mode": config.mode,
                                                 "translator": str(Path(translator_folder).resolve())}})
        write_json_atomically(dataset_json, output / "dataset.json")
        write_panel(output / PANEL_FILE, *panel_images, sobel_mri, config.mode)

    inputs = (translator_folder, mri_dataset_folder, config.mri_dataset)  # never written into
    output = build_dataset(dataset, output_dataset_folder, inputs, overwrite, write_case, finish,
                           f"translating CT -> MRI ({config.mode})")
    return output / PANEL_FILE


def _real_sobel_mri(mri_dataset_folder, config, allow_nonfinite: bool) -> np.ndarray | None:
    folder = mri_dataset_folder if mri_dataset_folder is not None else config.mri_dataset
    if mri_dataset_folder is None and not Path(folder).is_dir():
        return None
    dataset = open_raw_dataset(folder)
    volume, spacing, _ = read_volume(dataset.image_file(dataset.cases[0]), allow_nonfinite)
    return anatomy_space(volume, spacing, "mri")[volume.shape[0] // 2]

"""Training the CT -> MRI translator (CycleGAN, ASIT or plain) with checkpoints, resume and loss curves.

The translator folder holds ``config.json`` (what was asked), ``checkpoint_latest.pth`` (tensors and plain data
only, written atomically), ``progress.json`` (iteration and loss history) and ``loss_curves.png``. Rerunning the same
command resumes from the checkpoint; a checkpoint written under a different configuration, a checkpoint that holds
anything but tensors and plain data, and a non-empty folder that is not a translator folder are refused.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nnunetv2_uda.atomic_files import STAGING_PREFIX, save_figure, write_atomically, write_json_atomically
from nnunetv2_uda.checkpoints import load_checkpoint
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.json_files import read_json_object
from nnunetv2_uda.output_folders import OutputFolderError, check_output_folder
from nnunetv2_uda.translation.image_pool import ImagePool
from nnunetv2_uda.translation.losses import TranslationBatch, discriminator_loss, generator_objective
from nnunetv2_uda.translation.networks import PatchDiscriminator, build_generator
from nnunetv2_uda.translation.raw_dataset import open_raw_dataset
from nnunetv2_uda.translation.settings import TranslatorSettings, TranslatorSettingsError, number_problem
from nnunetv2_uda.translation.slices import TRANSLATION_MODES, extract_slices, median_inplane_spacing

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint_latest.pth"
PROGRESS_FILE = "progress.json"
LOSS_PLOT_FILE = "loss_curves.png"
LOSS_TERMS = ("total", "adversarial", "cycle", "identity", "anatomy", "discriminator_t", "discriminator_s")
_SHORT_NAMES = {"total": "L", "adversarial": "adv", "cycle": "cyc", "identity": "idt", "anatomy": "anat",
                "discriminator_t": "D_t", "discriminator_s": "D_s"}


class TranslatorConfigError(UserInputError):
    """A translator folder or checkpoint that is invalid or does not match what was asked for."""


@dataclass(frozen=True, kw_only=True)
class TranslatorConfig(TranslatorSettings):
    """What a translator folder's config.json records: its settings (the in-plane spacing resolved), the datasets it
    was trained on, its mode and the optimizer settings only the Python API sees."""

    ct_dataset: str
    mri_dataset: str
    mode: str = "asit"
    learning_rate: float = 2e-4
    pool_size: int = 50

    def __post_init__(self):
        try:
            super().__post_init__()
            problems = {}
        except TranslatorSettingsError as error:
            problems = dict(error.problems)
        if self.mode not in TRANSLATION_MODES:
            problems["mode"] = f"must be one of {TRANSLATION_MODES}, got {self.mode!r}"
        for name, value, minimum, strict in (("inplane_spacing", self.inplane_spacing, 0, True),
                                             ("learning_rate", self.learning_rate, 0, True),
                                             ("pool_size", self.pool_size, 0, False)):
            problem = number_problem(value, name == "pool_size", minimum, strict)
            if problem:
                problems[name] = problem
            elif name != "inplane_spacing":
                object.__setattr__(self, name, int(value) if name == "pool_size" else float(value))
        if problems:
            raise TranslatorSettingsError(problems)

    def differences(self, other: TranslatorConfig) -> dict[str, tuple]:
        return {f.name: (getattr(other, f.name), getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}


class CycleGAN:
    """T_t (CT side -> MRI), T_s (MRI -> CT side), discriminators D_t (MRI) and D_s (CT side), their optimizers."""

    def __init__(self, config: TranslatorConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)

        def generator():
            return build_generator(config.generator, config.generator_features, config.residual_blocks).to(self.device)

        def discriminator():
            return PatchDiscriminator(1, config.discriminator_features).to(self.device)

        self.T_t, self.T_s, self.D_t, self.D_s = generator(), generator(), discriminator(), discriminator()
        betas = (0.5, 0.999)
        self.optimizer_G = torch.optim.Adam([*self.T_t.parameters(), *self.T_s.parameters()], config.learning_rate,
                                            betas=betas)
        self.optimizer_D = torch.optim.Adam([*self.D_t.parameters(), *self.D_s.parameters()], config.learning_rate,
                                            betas=betas)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, self.linear_decay)
                           for o in (self.optimizer_G, self.optimizer_D)]
        self.pool_mri, self.pool_ct = ImagePool(config.pool_size), ImagePool(config.pool_size)

    def linear_decay(self, iteration: int) -> float:
        """CycleGAN's schedule: constant for the first half, then linearly down to zero."""
        constant = self.config.iterations // 2
        return 1.0 - max(0, iteration + 1 - constant) / float(self.config.iterations - constant + 1)

    def _discriminators_trainable(self, trainable: bool) -> None:
        for parameter in [*self.D_t.parameters(), *self.D_s.parameters()]:
            parameter.requires_grad_(trainable)

    def train_step(self, batch: TranslationBatch, rng: np.random.Generator) -> dict[str, float]:
        self._discriminators_trainable(False)
        objective = generator_objective(self.T_t, self.T_s, self.D_t, self.D_s, batch,
                                        self.config.lambda_cycle, self.config.lambda_identity,
                                        self.config.lambda_anatomy)
        self.optimizer_G.zero_grad(set_to_none=True)
        objective.total.backward()
        self.optimizer_G.step()

        self._discriminators_trainable(True)
        loss_t = discriminator_loss(self.D_t, batch.y, self.pool_mri.query(objective.fake_mri, rng))
        loss_s = discriminator_loss(self.D_s, batch.x, self.pool_ct.query(objective.fake_ct, rng))
        self.optimizer_D.zero_grad(set_to_none=True)
        (loss_t + loss_s).backward()
        self.optimizer_D.step()
        for scheduler in self.schedulers:
            scheduler.step()
        losses = {"total": objective.total.item(), "adversarial": objective.adversarial.item(),
                  "cycle": objective.cycle.item(), "identity": objective.identity.item(),
                  "discriminator_t": loss_t.item(), "discriminator_s": loss_s.item()}
        if self.config.lambda_anatomy:  # the optional term is reported only where it is part of the objective
            losses["anatomy"] = objective.anatomy.item()
        return losses

    def state_dict(self) -> dict:
        return {"T_t": self.T_t.state_dict(), "T_s": self.T_s.state_dict(), "D_t": self.D_t.state_dict(),
                "D_s": self.D_s.state_dict(), "optimizer_G": self.optimizer_G.state_dict(),
                "optimizer_D": self.optimizer_D.state_dict(),
                "schedulers": [s.state_dict() for s in self.schedulers],
                "pool_mri": self.pool_mri.state_dict(), "pool_ct": self.pool_ct.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for name in ("T_t", "T_s", "D_t", "D_s", "optimizer_G", "optimizer_D"):
            getattr(self, name).load_state_dict(state[name])
        for scheduler, scheduler_state in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(scheduler_state)
        self.pool_mri.load_state_dict(state["pool_mri"], self.device)
        self.pool_ct.load_state_dict(state["pool_ct"], self.device)


def read_config(translator_folder: str | os.PathLike) -> TranslatorConfig:
    path = Path(translator_folder) / CONFIG_FILE
    if not path.is_file():
        raise TranslatorConfigError(f"'{translator_folder}' is not a translator folder: no {CONFIG_FILE}")
    content = read_json_object(path, "not a translator configuration as nnUNetv2_uda_train_translator writes it")
    try:
        return TranslatorConfig(**content)
    except (TypeError, TranslatorSettingsError) as error:
        raise TranslatorConfigError(f"'{path}' is not a valid translator configuration: {error}") from error


CHECKPOINT_KEYS = ("config", "iteration", "model", "history", "rng", "torch_rng")


def read_checkpoint(translator_folder: str | os.PathLike, config: TranslatorConfig) -> dict | None:
    """The latest checkpoint (tensors and plain data only), or None; refuses one written under a different
    configuration, naming the keys."""
    path = Path(translator_folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    checkpoint = load_checkpoint(path)
    try:
        missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
        if missing:
            raise TypeError(f"it lacks {missing}")
        saved = TranslatorConfig(**checkpoint["config"])
    except (TypeError, TranslatorSettingsError) as error:
        raise TranslatorConfigError(f"Checkpoint '{path}' was not written by this translator version "
                                    f"({error}); move it away to start over") from error
    differences = config.differences(saved)
    if differences:
        listed = ", ".join(f"{key}: checkpoint {old!r} vs requested {new!r}"
                           for key, (old, new) in differences.items())
        raise TranslatorConfigError(f"Refusing to resume from '{path}': it was trained with a different "
                                    f"configuration ({listed}). Use the same settings, or another output folder.")
    return checkpoint


def _save_checkpoint(folder: Path, config: TranslatorConfig, model: CycleGAN, iteration: int, history: list,
                     rng: np.random.Generator) -> None:
    """Tensors and plain data only (the random states are a dict of ints and a byte tensor), so the checkpoint
    loads with ``weights_only=True``."""
    state = {"config": asdict(config), "iteration": iteration, "model": model.state_dict(), "history": history,
             "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
    write_atomically(folder / CHECKPOINT_FILE, lambda temporary: torch.save(state, temporary))


def check_translator_folder(folder: Path, inputs: list[Path]) -> None:
    """Training writes into its own folder and resumes there: any other non-empty folder is refused, never written
    into, and so are the input datasets and folders inside them."""
    check_output_folder(folder, inputs, overwrite=True)
    if not folder.is_dir() or (folder / CONFIG_FILE).is_file() or (folder / CHECKPOINT_FILE).is_file():
        return
    foreign = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith(STAGING_PREFIX))
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputFolderError(f"output folder {folder} is not empty and is not a translator folder (no "
                                f"{CONFIG_FILE}; it holds {listed}); choose a new or empty folder")


def plot_loss_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    iterations = np.arange(1, len(history) + 1)
    window = max(1, len(history) // 50)
    for term in (term for term in LOSS_TERMS if term in history[0]):
        values = np.array([h[term] for h in history])
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axis = axes[1] if term.startswith("discriminator") else axes[0]
        axis.plot(iterations[window - 1:], smooth, label=term)
    axes[0].set_title("generator objective (eq. 4) and its terms")
    axes[1].set_title("discriminators (LSGAN)")
    for axis in axes:
        axis.set_xlabel("iteration")
        axis.legend()
        axis.set_yscale("log")
    figure.tight_layout()
    save_figure(figure, path, dpi=80)


def train_translator(ct_dataset_folder: str | os.PathLike, mri_dataset_folder: str | os.PathLike,
                     output_folder: str | os.PathLike, settings: TranslatorSettings | None = None, mode: str = "asit",
                     checkpoint_every: int = 500, device: str = "cpu", allow_nonfinite: bool = False,
                     on_checkpoint: Callable[[int], None] | None = None) -> Path:
    """Trains (or resumes) a translator in ``output_folder`` and returns that folder.

    ``settings`` None means the defaults of :class:`TranslatorSettings`; its ``inplane_spacing`` None means the
    median in-plane spacing of the MRI dataset. ``allow_nonfinite`` replaces NaN or infinite voxels of the images
    (said on stderr) instead of refusing them. ``on_checkpoint(iteration)`` is called after each checkpoint is on
    disk. Nothing is written before the settings, the folder and every image were checked.
    """
    settings = settings if settings is not None else TranslatorSettings()
    problem = number_problem(checkpoint_every, True, 1)
    if problem:
        raise TranslatorSettingsError({"checkpoint_every": problem})
    ct_dataset = open_raw_dataset(ct_dataset_folder)
    mri_dataset = open_raw_dataset(mri_dataset_folder)
    folder = Path(output_folder)
    check_translator_folder(folder, [ct_dataset.folder, mri_dataset.folder])
    spacing = settings.inplane_spacing if settings.inplane_spacing is not None else median_inplane_spacing(mri_dataset)
    config = TranslatorConfig(**{**asdict(settings), "inplane_spacing": float(spacing)}, mode=mode,
                              ct_dataset=str(ct_dataset.folder.resolve()),
                              mri_dataset=str(mri_dataset.folder.resolve()))
    checkpoint = read_checkpoint(folder, config)
    if (folder / CONFIG_FILE).is_file() and checkpoint is None:
        previous = read_config(folder)
        if previous.differences(config):
            raise TranslatorConfigError(f"'{folder}' holds a translator configured differently "
                                        f"({sorted(previous.differences(config))}); use another output folder")

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = CycleGAN(config, device)
    start, history = 0, []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        start, history = checkpoint["iteration"], checkpoint["history"]
        rng.bit_generator.state = checkpoint["rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        print(f"Resuming from {folder / CHECKPOINT_FILE} at iteration {start} of {config.iterations}", flush=True)
    if start >= config.iterations:
        return folder

    ct_slices, mri_slices = (extract_slices(dataset, domain, mode, config.inplane_spacing, config.slice_size,
                                            config.max_slices_per_case, allow_nonfinite=allow_nonfinite)
                             for dataset, domain in ((ct_dataset, "ct"), (mri_dataset, "mri")))
    ct_slices, mri_slices = ct_slices.to(model.device), mri_slices.to(model.device)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(asdict(config), folder / CONFIG_FILE)
    progress = tqdm(range(start, config.iterations), initial=start, total=config.iterations,
                    desc=f"translator ({mode})")
    for iteration in progress:
        ct_batch = ct_slices[torch.from_numpy(rng.integers(len(ct_slices), size=config.batch_size)).to(model.device)]
        mri_batch = mri_slices[torch.from_numpy(rng.integers(len(mri_slices), size=config.batch_size)).to(model.device)]
        losses = model.train_step(TranslationBatch.from_slices(ct_batch.float(), mri_batch.float()), rng)
        history.append(losses)
        progress.set_postfix({_SHORT_NAMES[k]: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
        done = iteration + 1
        if done % checkpoint_every == 0 or done == config.iterations:
            _save_checkpoint(folder, config, model, done, history, rng)
            write_json_atomically({"iteration": done, "iterations": config.iterations,
                                   "finished": done == config.iterations, "history": history}, folder / PROGRESS_FILE)
            plot_loss_curves(history, folder / LOSS_PLOT_FILE)
            if on_checkpoint is not None:
                on_checkpoint(done)
    return folder

"""The translator's training settings: one frozen type shared by ``nnUNetv2_uda_train_translator`` (its flags, their
defaults and help), the Python API (:func:`nnunetv2_uda.translation.translator.train_translator`) and the pipeline
config's ``translator:`` section, so a setting, its default and its valid range are written once, here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields

from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.translation.networks import (
    GENERATOR_DOWNSAMPLING,
    GENERATOR_MIN_SIZE,
    GENERATORS,
    PatchDiscriminator,
)

MIN_SLICE_SIZE = max(GENERATOR_MIN_SIZE, PatchDiscriminator.min_size())
"""Training slices feed the discriminators too, whose smallest input is larger than the generators'."""
API_ONLY_SETTINGS = ("ct_dataset", "mri_dataset", "learning_rate", "pool_size")


class TranslatorSettingsError(UserInputError):
    """Translator settings out of range; ``problems`` maps each bad setting to what is wrong with it."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("; ".join(f"{setting_label(name)} {problem}" for name, problem in problems.items()))


def setting_label(name: str) -> str:
    """A setting as the user gave it: the command-line flag where there is one."""
    return name if name in API_ONLY_SETTINGS else f"--{name}"


def number_problem(value, integer: bool, minimum: float, strict: bool = False) -> str | None:
    """What is wrong with ``value`` as an integer (or finite number) above (``strict``) or from ``minimum``."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, kind) and not isinstance(value, bool) and (integer or math.isfinite(value)) \
            and (value > minimum if strict else value >= minimum):
        return None
    what = "an integer" if integer else "a finite number"
    return f"must be {what} {'>' if strict else '>='} {minimum:g}, got {value!r}"


def _setting(default, help: str, minimum: float | None = None, strict: bool = False, choices: tuple = ()):
    """A field with its range (``minimum``, ``strict``: above it) or ``choices`` and its command-line help."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "strict": strict, "choices": choices})


@dataclass(frozen=True)
class TranslatorSettings:
    """How a translator is trained (not on what, nor where it is written). Values are checked on construction;
    numbers are stored as plain ``int``/``float``."""

    iterations: int = _setting(10000, "training iterations", 1)
    batch_size: int = _setting(4, "slices per domain per iteration", 1)
    slice_size: int = _setting(256, f"training slices are center cropped/padded to this size (a multiple of "
                               f"{GENERATOR_DOWNSAMPLING}, at least {MIN_SLICE_SIZE})", 1)
    inplane_spacing: float | None = _setting(None, "common in-plane spacing (mm) slices are resampled to; none: the "
                                             "median in-plane spacing of the MRI dataset", 0, strict=True)
    lambda_cycle: float = _setting(10.0, "cycle-consistency weight (eq. 4 lambda_1)", 0)
    lambda_identity: float = _setting(5.0, "identity weight (eq. 4 lambda_2)", 0)
    lambda_anatomy: float = _setting(0.0, "weight of an anatomy-consistency term that is not in the paper: 1 - "
                                     "correlation of the in-plane edge magnitudes of the fake MRI and its CT, so edges "
                                     "keep their place whatever their polarity (Hiasa et al. 2018's gradient "
                                     "consistency); 0: the paper's objective", 0)
    generator: str = _setting("resnet", "generator architecture: resnet (CycleGAN's default) or unet (skip "
                              "connections at every scale; keeps outlines sharp after short training)",
                              choices=tuple(sorted(GENERATORS)))
    generator_features: int = _setting(8, "generator base features (CycleGAN paper: 64; 8 is CPU-friendly)", 1)
    residual_blocks: int = _setting(3, "generator residual blocks (CycleGAN paper: 9; 0: none)", 0)
    discriminator_features: int = _setting(8, "discriminator base features (CycleGAN paper: 64)", 1)
    max_slices_per_case: int = _setting(64, "evenly spaced axial slices cached per case", 1)
    seed: int = _setting(12345, "random seed", 0)

    def __post_init__(self):
        """Refuses nonsense before any slice is cached, naming every bad setting."""
        problems = {}
        for setting in fields(self):
            value, meta = getattr(self, setting.name), setting.metadata
            if meta.get("choices"):
                if value not in meta["choices"]:
                    problems[setting.name] = f"must be one of {meta['choices']}, got {value!r}"
            elif meta.get("minimum") is not None and not (value is None and setting.default is None):
                integer = setting.type in ("int", int)
                problem = number_problem(value, integer, meta["minimum"], meta["strict"])
                if problem:
                    problems[setting.name] = problem
                else:
                    object.__setattr__(self, setting.name, int(value) if integer else float(value))
        if "slice_size" not in problems and (self.slice_size % GENERATOR_DOWNSAMPLING
                                             or self.slice_size < MIN_SLICE_SIZE):
            problems["slice_size"] = (f"must be a multiple of {GENERATOR_DOWNSAMPLING} and at least {MIN_SLICE_SIZE} "
                                      f"(the smallest input of the discriminators; the generators need "
                                      f"{GENERATOR_MIN_SIZE}), got {self.slice_size}")
        if problems:
            raise TranslatorSettingsError(problems)

    def command_line(self) -> list[str]:
        """The ``nnUNetv2_uda_train_translator`` flags that set these settings (an unset spacing is left out)."""
        return [part for setting in fields(TranslatorSettings) if getattr(self, setting.name) is not None
                for part in (f"--{setting.name}", str(getattr(self, setting.name)))]

"""The pipeline's configuration: a typed schema with defaults, read from YAML or JSON and checked before any work.

Every problem in a config file (unknown key, wrong type, bad value, missing required path) is collected and reported
together, so a user fixes the file once instead of once per error. docs/config.md documents every key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.pipeline.datasets import ID_SPAN, MAX_DATASET_ID
from nnunetv2_uda.pipeline.rows import ABLATION_ROWS, ROWS
from nnunetv2_uda.pseudolabels.registration import REGISTRATION_INPUTS
from nnunetv2_uda.training.cpu_precision import CPU_BF16_DEFAULT
from nnunetv2_uda.translation.settings import TranslatorSettings, TranslatorSettingsError

CONFIGURATIONS = ("2d", "3d_fullres")
# how MDM ranks the MRI sequences without sequence_order: by the organ-volume plausibility of the pseudo-labels
# against the CT labels (nnUNetv2_uda_mdm --ct_labels), or by their mean snapshot uncertainty (the paper's way)
SEQUENCE_RANKINGS = ("plausibility", "uncertainty")
# segmentation trainer -> its snapshot (pseudo-labeling) counterpart
TRAINERS = {"nnUNetTrainerUDASmall": "nnUNetTrainerUDAPseudoLabel",
            "nnUNetTrainerUDAQuick": "nnUNetTrainerUDAQuickPseudoLabel",
            "nnUNetTrainerUDASmallGIN": "nnUNetTrainerUDAPseudoLabelGIN",
            "nnUNetTrainerUDAQuickGIN": "nnUNetTrainerUDAQuickPseudoLabelGIN",
            "nnUNetTrainerUDASmallLocationScale": "nnUNetTrainerUDAPseudoLabelLocationScale",
            "nnUNetTrainerUDAQuickLocationScale": "nnUNetTrainerUDAQuickPseudoLabelLocationScale",
            "nnUNetTrainerUDASmallLocationScaleInnerAir": "nnUNetTrainerUDAPseudoLabelLocationScaleInnerAir",
            "nnUNetTrainerUDAQuickLocationScaleInnerAir": "nnUNetTrainerUDAQuickPseudoLabelLocationScaleInnerAir"}
TRAINERS.update({f"{trainer}NoMirroring": f"{counterpart}NoMirroring"
                 for trainer, counterpart in list(TRAINERS.items())})


INPUT_FOLDER_KEYS = ("ct_dataset", "mri_dataset", "validation_labels", "test_images", "test_labels")


class ConfigError(UserInputError):
    """A config file with problems; the message lists all of them (on one line)."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        listed = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)
        super().__init__(f"{source}: {listed}")


@dataclass
class TrainingBudget:
    """Epochs x iterations of one nnU-Net training (nnUNetTrainer*_<E>epochs_<I>iters budget variants)."""

    epochs: int = 1000
    iterations_per_epoch: int = 250


@dataclass
class SelfTrainingConfig:
    """Stage 4: self-training on the MRI pseudo-labels with K snapshots, then uncertainty filtering."""

    epochs: int = 1000
    iterations_per_epoch: int = 250
    num_snapshots: int = 4
    threshold: float | None = None
    keep_fraction: float | None = 0.5


@dataclass
class FinalConfig:
    """Stage 5: the final small network on kept MRI pseudo-labels plus CT cases."""

    epochs: int = 1000
    iterations_per_epoch: int = 250
    max_mri_cases: int = 300
    max_ct_cases: int = 100
    ct_source: str = "ct"


@dataclass
class PipelineConfig:
    """All settings of ``nnUNetv2_uda_run``; see docs/config.md."""

    ct_dataset: Path | None = None
    mri_dataset: Path | None = None
    output_folder: Path | None = None
    validation_labels: Path | None = None
    test_images: Path | None = None
    test_labels: Path | None = None
    dataset_id_base: int | None = None  # None: the first free range, recorded in manifest.json
    device: str = "cuda"
    configuration: str = "2d"
    trainer: str = "nnUNetTrainerUDASmall"
    cpu_bf16: bool = CPU_BF16_DEFAULT  # bfloat16 autocast when training on a CPU with bfloat16 units
    organs: list[str] | None = None
    largest_component: bool = False
    target_spacing: list[float] | None = None
    batch_size: int | None = None
    fold: str = "all"
    num_processes: int = 2
    num_gpus: int = 1
    num_parts: int = 1
    parallel_steps: int = 1  # above 1: steps run as Dask tasks, independent ones at once
    scheduler: str | None = None  # a Dask scheduler address for steps and parts; None: a LocalCluster
    warm_start: bool = True
    source_warm_start: bool = False
    mri_default_sequence: str | None = None
    ablation: str | list[str] = "asit_mdm_plf"
    sequence_order: list[str] | None = None
    sequence_ranking: str = "plausibility"  # without sequence_order: see SEQUENCE_RANKINGS
    mdm_registration: str = "labels"  # what MDM's affine registration aligns: REGISTRATION_INPUTS
    mdm_keep_more_plausible: bool = False  # a case keeps its label unless its match's volumes are more plausible
    translator: TranslatorSettings = field(default_factory=TranslatorSettings)  # stage 1: nnUNetv2_uda_train_translator
    source_training: TrainingBudget = field(default_factory=TrainingBudget)
    ct_training: TrainingBudget | None = None
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    final: FinalConfig = field(default_factory=FinalConfig)

    @property
    def rows(self) -> list[str]:
        return [self.ablation] if isinstance(self.ablation, str) else list(self.ablation)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _type_name(annotation) -> str:
    return str(annotation).replace("typing.", "").replace("pathlib.", "").replace("<class '", "").replace("'>", "")


def _convert(value, annotation, key: str, problems: list[str]):
    """``value`` as ``annotation`` (a field's type), or a problem appended and None returned."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        concrete = [option for option in options if option is not type(None)]
        if len(concrete) == 1:
            return _convert(value, concrete[0], key, problems)
        for option in options:
            if option is type(None):
                continue
            trial: list[str] = []
            converted = _convert(value, option, key, trial)
            if not trial:
                return converted
        problems.append(f"'{key}': expected {_type_name(annotation)}, got {value!r}")
        return None
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            problems.append(f"'{key}': expected a list of {_type_name(item_type)}, got {value!r}")
            return None
        return [_convert(v, item_type, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            problems.append(f"'{key}': expected a mapping of settings, got {value!r}")
            return None
        return _build(annotation, value, key + ".", problems)
    if annotation is Path:
        if not isinstance(value, str) or not value:
            problems.append(f"'{key}': expected a path (string), got {value!r}")
            return None
        return Path(value).expanduser()
    if annotation is bool:
        if not isinstance(value, bool):
            problems.append(f"'{key}': expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"'{key}': expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"'{key}': expected a number, got {value!r}")
            return value
        if not math.isfinite(value):
            problems.append(f"'{key}': expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            problems.append(f"'{key}': expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {annotation}")  # a bug in the schema, not in the user's file


def _build(schema: type, values: dict, prefix: str, problems: list[str]):
    hints = typing.get_type_hints(schema)
    known = {f.name for f in dataclasses.fields(schema)}
    for key in values:
        if key not in known:
            problems.append(f"'{prefix}{key}': unknown key (known: {', '.join(sorted(known))})")
    before = len(problems)
    kwargs = {name: _convert(values[name], hints[name], prefix + name, problems) for name in known if name in values}
    try:
        return schema(**kwargs)
    except TranslatorSettingsError as error:  # its ranges are checked where the type is defined
        named = " ".join(problems[before:])
        problems.extend(f"'{prefix}{name}': {problem}" for name, problem in error.problems.items()
                        if f"'{prefix}{name}'" not in named)
        return None


def _check_values(config: PipelineConfig, problems: list[str]) -> None:
    for key in ("ct_dataset", "mri_dataset", "output_folder"):
        if getattr(config, key) is None:
            problems.append(f"'{key}': required")
    for row in config.rows:
        if row not in ABLATION_ROWS:
            problems.append(f"'ablation': unknown row {row!r} (choose from {', '.join(ABLATION_ROWS)})")
    if not config.rows:
        problems.append("'ablation': at least one row")
    if config.configuration not in CONFIGURATIONS:
        problems.append(f"'configuration': {config.configuration!r} is not one of {', '.join(CONFIGURATIONS)}")
    if config.trainer not in TRAINERS:
        problems.append(f"'trainer': {config.trainer!r} is not one of {', '.join(TRAINERS)}")
    if config.organs is not None and not config.organs:
        problems.append("'organs': an empty list; give the organ names to train on, or null for all")
    if config.organs is not None and len(set(config.organs)) != len(config.organs):
        problems.append(f"'organs': names repeated in {config.organs}")
    if config.target_spacing is not None and len(config.target_spacing) != 3:
        problems.append(f"'target_spacing': expected 3 numbers (z y x, mm), got {config.target_spacing}")
    if config.target_spacing is not None and any(spacing <= 0 for spacing in config.target_spacing):
        problems.append(f"'target_spacing': spacings must be positive (mm), got {config.target_spacing}")
    if config.sequence_ranking not in SEQUENCE_RANKINGS:
        problems.append(f"'sequence_ranking': {config.sequence_ranking!r} is not one of {', '.join(SEQUENCE_RANKINGS)}")
    if config.mdm_registration not in REGISTRATION_INPUTS:
        problems.append(f"'mdm_registration': {config.mdm_registration!r} is not one of "
                        f"{', '.join(REGISTRATION_INPUTS)}")
    if config.mdm_keep_more_plausible and config.sequence_ranking != "plausibility" and not config.sequence_order:
        problems.append("'mdm_keep_more_plausible': compares organ volumes against the CT labels, which the "
                        "'uncertainty' ranking does not read; use sequence_ranking 'plausibility' or a sequence_order")
    if config.device not in ("cpu", "cuda", "mps"):
        problems.append(f"'device': {config.device!r} is not one of cpu, cuda, mps")
    if isinstance(config.scheduler, str) and "://" not in config.scheduler:
        problems.append(f"'scheduler': {config.scheduler!r} is not a Dask scheduler address such as "
                        f"tcp://host:8786")
    if config.fold != "all" and config.fold not in tuple("01234"):
        problems.append(f"'fold': {config.fold!r} is not 'all' or 0-4")
    positive = {"num_processes": config.num_processes,
                "batch_size": config.batch_size, "num_gpus": config.num_gpus, "num_parts": config.num_parts,
                "parallel_steps": config.parallel_steps,
                "source_training.epochs": config.source_training.epochs,
                "source_training.iterations_per_epoch": config.source_training.iterations_per_epoch,
                "self_training.epochs": config.self_training.epochs,
                "self_training.iterations_per_epoch": config.self_training.iterations_per_epoch,
                "self_training.num_snapshots": config.self_training.num_snapshots,
                "final.epochs": config.final.epochs, "final.iterations_per_epoch": config.final.iterations_per_epoch,
                "final.max_mri_cases": config.final.max_mri_cases}
    if config.ct_training is not None:
        positive.update({"ct_training.epochs": config.ct_training.epochs,
                         "ct_training.iterations_per_epoch": config.ct_training.iterations_per_epoch})
    for key, value in positive.items():
        if isinstance(value, int) and value < 1:
            problems.append(f"'{key}': must be at least 1, got {value}")
    last_base = MAX_DATASET_ID - ID_SPAN + 1
    if isinstance(config.dataset_id_base, int) and not 1 <= config.dataset_id_base <= last_base:
        problems.append(f"'dataset_id_base': must be within 1-{last_base} (the pipeline uses ids "
                        f"base..base+{ID_SPAN - 1}), or null to find free ids, got {config.dataset_id_base}")
    if isinstance(config.final.max_ct_cases, int) and config.final.max_ct_cases < 0:
        problems.append(f"'final.max_ct_cases': must be at least 0, got {config.final.max_ct_cases}")
    if config.final.ct_source not in ("fake_mri", "ct"):
        problems.append(f"'final.ct_source': {config.final.ct_source!r} is not 'fake_mri' or 'ct'")
    selftrain = config.self_training
    if (selftrain.threshold is None) == (selftrain.keep_fraction is None):
        problems.append("'self_training': set exactly one of 'threshold' and 'keep_fraction' (the other null)")
    if isinstance(selftrain.threshold, float) and selftrain.threshold <= 0:
        problems.append(f"'self_training.threshold': must be positive (cases with uncertainty below it are kept), "
                        f"got {selftrain.threshold}")
    if isinstance(selftrain.keep_fraction, float) and not 0 < selftrain.keep_fraction <= 1:
        problems.append(f"'self_training.keep_fraction': must be in (0, 1], got {selftrain.keep_fraction}")
    if isinstance(selftrain.num_snapshots, int) and selftrain.num_snapshots < 2:
        problems.append(f"'self_training.num_snapshots': at least 2 (uncertainty compares snapshots), "
                        f"got {selftrain.num_snapshots}")
    snapshot_budgets = {"self_training.epochs": selftrain.epochs}
    for source in ranking_sources(config):  # MDM ranks the sequences by these networks' snapshots
        snapshot_budgets[f"{source_budget_key(config, source)}.epochs"] = source_budget(config, source).epochs
    for key, epochs in snapshot_budgets.items():
        if isinstance(epochs, int) and isinstance(selftrain.num_snapshots, int) and selftrain.num_snapshots > epochs:
            problems.append(f"'self_training.num_snapshots' ({selftrain.num_snapshots}) exceeds '{key}' ({epochs}): "
                            f"one snapshot per epoch at most")


def ranking_sources(config: PipelineConfig) -> set[str]:
    """The source networks whose snapshot uncertainty ranks the MRI sequences for MDM (those the MDM rows start
    from), none where the config gives the order (``sequence_order``) or ranks by organ volumes."""
    if config.sequence_order or config.sequence_ranking != "uncertainty":
        return set()
    return {ROWS[row].source for row in config.rows if row in ROWS and ROWS[row].mdm}


def source_budget_key(config: PipelineConfig, source: str) -> str:
    """The config key of the budget of the network trained on ``source``: ``ct_training`` for the CT network where
    given, else ``source_training``."""
    return "ct_training" if source == "ct" and config.ct_training is not None else "source_training"


def source_budget(config: PipelineConfig, source: str) -> TrainingBudget:
    """The training budget of the network trained on ``source`` (the config key :func:`source_budget_key` names)."""
    return getattr(config, source_budget_key(config, source))


def source_snapshots(config: PipelineConfig, source: str) -> int:
    """How many snapshot pseudo-labels of the MRI the network trained on ``source`` keeps for MDM's ranking:
    ``num_snapshots``, fewer where its training has fewer epochs, none where the sequences are not ranked by
    uncertainty (``sequence_order`` given, or ``sequence_ranking`` another) or fewer than two fit. With uncertainty
    ranking the ASIT network keeps them whether or not an MDM row follows, so adding an MDM row to a run keeps its
    trained ASIT network; the CT network, which most rows use without MDM, only where an MDM row starts from it."""
    if config.sequence_order or config.sequence_ranking != "uncertainty" or (
            source != "asit" and source not in ranking_sources(config)):
        return 0
    count = min(config.self_training.num_snapshots, source_budget(config, source).epochs)
    return count if count >= 2 else 0


def config_from_dict(values: dict, source: str = "config") -> PipelineConfig:
    """Builds and checks a config; raises :class:`ConfigError` listing every problem."""
    if not isinstance(values, dict):
        raise ConfigError(source, [f"expected a mapping of settings at the top level, got {type(values).__name__}"])
    problems: list[str] = []
    config = _build(PipelineConfig, values, "", problems)
    if not problems:
        _check_values(config, problems)
    if problems:
        raise ConfigError(source, problems)
    return config


def check_inputs(config: PipelineConfig) -> None:
    """Names every missing input folder (before any work starts)."""
    problems = []
    for key in INPUT_FOLDER_KEYS:
        folder = getattr(config, key)
        if folder is not None and not Path(folder).is_dir():
            problems.append(f"'{key}': folder {folder} does not exist")
    for key in ("ct_dataset", "mri_dataset"):
        folder = getattr(config, key)
        if folder is not None and Path(folder).is_dir() and not (Path(folder) / "dataset.json").is_file():
            problems.append(f"'{key}': {folder} has no dataset.json (expected an nnU-Net raw dataset folder)")
    labels = config.validation_labels
    if labels is not None and Path(labels).is_dir() and not any(Path(labels).glob("*.nii.gz")):
        problems.append(f"'validation_labels': {labels} holds no .nii.gz label maps")
    if config.test_labels is not None and config.test_images is None:
        problems.append("'test_labels' needs 'test_images'")
    if problems:
        raise ConfigError("inputs", problems)

"""``nnUNetPredictorFast``: nnU-Net's predictor with the paper's inference order, per-case error handling and a
start-up of little more than ``import torch``.

It has ``nnUNetPredictor``'s constructor, attributes and methods, and its sliding window (Gaussian weighting,
half-precision accumulation, autocast on CUDA, the fallback to CPU results when the device runs out of memory) and
output handling (``-num_parts``, ``--continue_prediction``, the arguments, dataset.json and plans.json recorded in
the output folder). It is not a subclass: importing nnU-Net's predictor module imports torch._dynamo and nnU-Net's
worker-process preprocessing and export (seconds), so the methods prediction from files needs are this class's,
and the rest (prediction from numpy arrays) call nnU-Net's own, imported when first used. What changes:

* the model is loaded with tensors and plain data only (:func:`nnunetv2_uda.checkpoints.load_checkpoint`: a
  checkpoint whose pickle would run code is refused), and the network is built without importing the trainer
  where its ``build_network_architecture`` is nnUNetTrainer's (:mod:`.network`);
* cases are read, checked (truncated, corrupt, NaN) and preprocessed in a background thread, one case ahead, so
  that this overlaps with the network of the case before; preprocessing runs on the compute device
  (:mod:`.preprocessing`; ``input_resampling="nnunet"`` keeps nnU-Net's own, for the closest agreement with stock);
* logits stay on the device; the class decision is made there at network resolution, and only the uint8 label map
  is resampled to the original geometry (:mod:`nnunetv2_uda.inference.export`); the file is written in another
  background thread while the next case runs through the network;
* no test-time mirroring by default;
* a case that cannot be predicted is reported by name and skipped; the others are still written, and
  :class:`CasesFailedError` is raised at the end.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from batchgenerators.utilities.file_and_folder_operations import save_json
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
from nnunetv2.utilities.helpers import empty_cache
from nnunetv2.utilities.json_export import recursive_fix_for_json_export
from nnunetv2.utilities.label_handling.label_handling import (
    convert_labelmap_to_one_hot,
    determine_num_input_channels,
)
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nnunetv2_uda.checkpoints import CheckpointError, load_checkpoint
from nnunetv2_uda.command_line import UserInputError, one_line
from nnunetv2_uda.images import verify_voxels
from nnunetv2_uda.inference.cases import list_cases
from nnunetv2_uda.inference.export import segmentation_from_logits_fast, write_segmentation
from nnunetv2_uda.inference.input_checks import expected_channel_names
from nnunetv2_uda.inference.network import build_network
from nnunetv2_uda.inference.options import INPUT_RESAMPLING_MODES, LABEL_RESAMPLING_MODES
from nnunetv2_uda.inference.preprocessing import TorchCasePreprocessor
from nnunetv2_uda.inference.reading import read_case
from nnunetv2_uda.json_files import read_json_object

TORCH_INPUT_RESAMPLING = "resample_torch_fornnunet"  # nnU-Net's own torch resampling function
DEFAULT_DEVICE = torch.device("cuda")
MODEL_FILE = "not the {} nnU-Net keeps with a trained model"


def stock_predictor() -> type:
    """nnU-Net's ``nnUNetPredictor``, imported only where one of its own methods is called."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    return nnUNetPredictor


def unwrapped(network: nn.Module) -> nn.Module:
    """The network under ``torch.compile``'s wrapper (without importing torch._dynamo, which only a compiled
    network has loaded)."""
    if "torch._dynamo" in sys.modules:
        from torch._dynamo import OptimizedModule

        if isinstance(network, OptimizedModule):
            return network._orig_mod
    return network


def compile_requested() -> bool:
    """nnU-Net's switch for ``torch.compile`` at inference (``nnUNet_compile``)."""
    return os.environ.get("nnUNet_compile", "").lower() in ("true", "1", "t")


class CasesFailedError(UserInputError):
    """Some cases could not be predicted; all others were. ``failures`` maps case (or file) -> reason; ``results``
    holds what the successful cases returned."""

    exit_code = 1

    def __init__(self, failures: dict[str, str], results: list | None = None):
        self.failures = dict(failures)
        self.results = results or []
        reasons = "; ".join(f"{case}: {reason}" for case, reason in self.failures.items())
        super().__init__(f"{len(self.failures)} case(s) could not be predicted (the others were): {reasons}")


def _failure(error: Exception) -> str:
    """An expected error as its one-line message; anything else (a bug) with its traceback printed first."""
    if isinstance(error, UserInputError):
        return one_line(error)
    traceback.print_exc()
    return f"{type(error).__name__}: {one_line(error)}"


def _in_background(items: Iterator, prefetch: int = 1, name: str = "preprocessing") -> Iterator:
    """Runs ``items`` in a thread, ``prefetch`` items ahead, so that reading and preprocessing (or copying tiles to
    the device) overlap with prediction. The thread stops when the consumer does; its error is raised to the
    consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    end = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:  # handed over to the consumer, which re-raises it
            buffer.put(error)
        buffer.put(end)

    threading.Thread(target=produce, daemon=True, name=name).start()
    try:
        while (item := buffer.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class nnUNetPredictorFast:
    """Drop-in replacement for ``nnUNetPredictor`` (same constructor, plus ``label_resampling``,
    ``input_resampling`` and ``allow_nonfinite``; TTA off by default). Initialize with
    ``initialize_from_trained_model_folder`` or ``manual_initialization`` as usual. After a run, ``case_timings``
    holds each case's phase times in seconds and ``first_network_call`` the time (``time.time()``) the network
    first ran."""

    def __init__(self, tile_step_size: float = 0.5, use_gaussian: bool = True, use_mirroring: bool = False,
                 perform_everything_on_device: bool = True, device: torch.device = DEFAULT_DEVICE,
                 verbose: bool = False, verbose_preprocessing: bool = False, allow_tqdm: bool = True,
                 label_resampling: str = "nearest", input_resampling: str = "torch", allow_nonfinite: bool = False):
        if label_resampling not in LABEL_RESAMPLING_MODES:
            raise ValueError(f"label_resampling must be one of {LABEL_RESAMPLING_MODES}, got '{label_resampling}'")
        if input_resampling not in INPUT_RESAMPLING_MODES:
            raise ValueError(f"input_resampling must be one of {INPUT_RESAMPLING_MODES}, got '{input_resampling}'")
        if not 0 < tile_step_size <= 1:
            raise ValueError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
        self.verbose, self.verbose_preprocessing, self.allow_tqdm = verbose, verbose_preprocessing, allow_tqdm
        self.plans_manager: PlansManager | None = None
        self.configuration_manager: ConfigurationManager | None = None
        self.list_of_parameters: list[dict] | None = None
        self.network: nn.Module | None = None
        self.dataset_json: dict | None = None
        self.trainer_name: str | None = None
        self.allowed_mirroring_axes: tuple[int, ...] | None = None
        self.label_manager = None
        self.tile_step_size, self.use_gaussian, self.use_mirroring = tile_step_size, use_gaussian, use_mirroring
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        elif perform_everything_on_device:
            print("perform_everything_on_device=True is only supported for cuda devices! Setting this to False")
            perform_everything_on_device = False
        self.device = device
        self.perform_everything_on_device = perform_everything_on_device
        self.label_resampling = label_resampling
        self.input_resampling = input_resampling
        self.allow_nonfinite = allow_nonfinite
        self.failed_cases: dict[str, str] = {}
        self.case_timings: list[dict] = []
        self.first_network_call: float | None = None

    def initialize_from_trained_model_folder(self, model_training_output_dir: str,
                                             use_folds: tuple[int | str, ...] | list | str | None,
                                             checkpoint_name: str = "checkpoint_final.pth"):
        """nnU-Net's, with the checkpoints loaded as tensors and plain data only (nnU-Net's ``torch.load`` with
        ``weights_only=False`` would run whatever a crafted checkpoint's pickle asks for) and the network built
        by :func:`.network.build_network` (the trainer is imported only where it builds its own)."""
        folder = Path(model_training_output_dir)
        if use_folds is None:
            use_folds = self.auto_detect_available_folds(str(folder), checkpoint_name)
        folds = [use_folds] if isinstance(use_folds, str) else list(use_folds)
        if not folds:
            raise CheckpointError(f"{folder}: no fold_<n>/{checkpoint_name} to predict with")
        dataset_json = read_json_object(folder / "dataset.json", MODEL_FILE.format("dataset.json"), CheckpointError)
        plans_manager = PlansManager(read_json_object(folder / "plans.json", MODEL_FILE.format("plans.json"),
                                                      CheckpointError))
        files = [folder / f"fold_{fold if fold == 'all' else int(fold)}" / checkpoint_name for fold in folds]
        checkpoints = [load_checkpoint(path) for path in files]
        try:
            trainer_name = checkpoints[0]["trainer_name"]
            configuration_name = checkpoints[0]["init_args"]["configuration"]
            parameters = [checkpoint["network_weights"] for checkpoint in checkpoints]
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{files[0]}: not an nnU-Net checkpoint (no {error})") from error
        configuration_manager = plans_manager.get_configuration(configuration_name)
        label_manager = plans_manager.get_label_manager(dataset_json)
        network = build_network(trainer_name, plans_manager, configuration_manager,
                                determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
                                label_manager.num_segmentation_heads)
        try:
            network.load_state_dict(parameters[0])
        except RuntimeError as error:
            raise CheckpointError(f"{files[0]}: its weights do not fit the network that {folder / 'plans.json'} "
                                  f"describes ({one_line(error)[:200]})") from error
        self.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                   trainer_name, checkpoints[0].get("inference_allowed_mirroring_axes"))

    def manual_initialization(self, network: nn.Module, plans_manager: PlansManager,
                              configuration_manager: ConfigurationManager, parameters: list[dict] | None,
                              dataset_json: dict, trainer_name: str,
                              inference_allowed_mirroring_axes: tuple[int, ...] | None):
        """nnU-Net's: a network and the model's managers handed over (as a trainer does for its final validation);
        ``parameters=None`` predicts with the network's current weights. With ``nnUNet_compile`` set the network is
        compiled, as by nnU-Net."""
        self.plans_manager, self.configuration_manager = plans_manager, configuration_manager
        self.list_of_parameters, self.network, self.dataset_json = parameters, network, dataset_json
        self.trainer_name, self.allowed_mirroring_axes = trainer_name, inference_allowed_mirroring_axes
        self.label_manager = plans_manager.get_label_manager(dataset_json)
        if compile_requested() and unwrapped(network) is network and (
                not isinstance(network, DistributedDataParallel) or unwrapped(network.module) is not network.module):
            print("Using torch.compile")
            self.network = torch.compile(network)

    @staticmethod
    def auto_detect_available_folds(model_training_output_dir: str, checkpoint_name: str) -> list[int]:
        """nnU-Net's."""
        return stock_predictor().auto_detect_available_folds(model_training_output_dir, checkpoint_name)

    def get_data_iterator_from_raw_npy_data(self, *args, **kwargs):
        """nnU-Net's (its preprocessing in worker processes)."""
        return stock_predictor().get_data_iterator_from_raw_npy_data(self, *args, **kwargs)

    def predict_from_list_of_npy_arrays(self, *args, **kwargs):
        """nnU-Net's, with this predictor's network and export."""
        return stock_predictor().predict_from_list_of_npy_arrays(self, *args, **kwargs)

    def predict_single_npy_array(self, *args, **kwargs):
        """nnU-Net's (its preprocessing and its export to the original geometry), with this predictor's network."""
        return stock_predictor().predict_single_npy_array(self, *args, **kwargs)

    def preprocessing_configuration(self) -> ConfigurationManager:
        """The model's configuration with the input resampled by nnU-Net's torch function on the compute device
        (``input_resampling="torch"``), or unchanged (``"nnunet"``: the plans' function, scipy on the CPU)."""
        if self.input_resampling == "nnunet":
            return self.configuration_manager
        configuration = deepcopy(self.configuration_manager.configuration)
        configuration["resampling_fn_data"] = TORCH_INPUT_RESAMPLING
        configuration["resampling_fn_data_kwargs"] = {
            "is_seg": False, "device": self.device,
            "force_separate_z": configuration.get("resampling_fn_data_kwargs", {}).get("force_separate_z"),
        }
        return ConfigurationManager(configuration)

    def predict_from_files(self, list_of_lists_or_source_folder: str | list[list[str]],
                           output_folder_or_list_of_truncated_output_files: str | list[str] | None,
                           save_probabilities: bool = False, overwrite: bool = True,
                           num_processes_preprocessing: int = 1, num_processes_segmentation_export: int = 1,
                           folder_with_segs_from_prev_stage: str | None = None, num_parts: int = 1,
                           part_id: int = 0):
        """nnU-Net's: the arguments, dataset.json and plans.json are recorded in the output folder, part
        ``part_id`` of ``num_parts`` is predicted and, unless ``overwrite``, cases already written are skipped. A
        source folder is listed in this process (nnU-Net forks a pool of 12 copies of the torch-sized process just
        to group file names) by :func:`.cases.list_cases`: hidden files are never cases, and misnamed files or
        incomplete cases are failures of their own (reported with the others at the end)."""
        arguments = {name: value for name, value in locals().items() if name != "self"}
        if not 0 <= part_id < num_parts:
            raise ValueError(f"part_id must be in [0, num_parts), got part_id={part_id}, num_parts={num_parts}")
        outputs = output_folder_or_list_of_truncated_output_files
        output_folder = outputs if isinstance(outputs, str) else None
        if isinstance(outputs, list) and outputs:
            output_folder = os.path.dirname(outputs[0]) or os.curdir
        if output_folder is not None:  # what the prediction was made with, and what postprocessing needs
            arguments = deepcopy(arguments)
            recursive_fix_for_json_export(arguments)
            os.makedirs(output_folder, exist_ok=True)
            save_json(arguments, os.path.join(output_folder, "predict_from_raw_data_args.json"))
            save_json(self.dataset_json, os.path.join(output_folder, "dataset.json"), sort_keys=False)
            save_json(self.plans_manager.plans, os.path.join(output_folder, "plans.json"), sort_keys=False)
        if self.configuration_manager.previous_stage_name is not None and folder_with_segs_from_prev_stage is None:
            raise UserInputError(f"this configuration is a cascade: it needs the segmentations of its previous stage "
                                 f"({self.configuration_manager.previous_stage_name}); give their folder "
                                 f"(-prev_stage_predictions)")
        listing_failures = {}
        if isinstance(list_of_lists_or_source_folder, str):
            listing = list_cases(list_of_lists_or_source_folder, self.dataset_json["file_ending"],
                                 len(expected_channel_names(self.dataset_json)))
            list_of_lists_or_source_folder, listing_failures = listing.cases, listing.failures
        cases, output_files, seg_files = self._manage_input_and_output_lists(
            list_of_lists_or_source_folder, outputs, folder_with_segs_from_prev_stage, overwrite, part_id, num_parts,
            save_probabilities)
        results = None
        if cases:
            data_iterator = self._internal_get_data_iterator_from_lists_of_filenames(cases, seg_files, output_files,
                                                                                     num_processes_preprocessing)
            try:
                results = self.predict_from_data_iterator(data_iterator, save_probabilities,
                                                          num_processes_segmentation_export)
            except CasesFailedError as error:
                raise CasesFailedError({**listing_failures, **error.failures}, error.results) from None
        if listing_failures:
            raise CasesFailedError(listing_failures, results or [])
        return results

    def _manage_input_and_output_lists(self, list_of_lists_or_source_folder: str | list[list[str]],
                                       output_folder_or_list_of_truncated_output_files: str | list[str] | None,
                                       folder_with_segs_from_prev_stage: str | None = None, overwrite: bool = True,
                                       part_id: int = 0, num_parts: int = 1, save_probabilities: bool = False):
        """nnU-Net's: this part's cases, their truncated output names (the case name: the first file's name without
        ``_0000`` and the file ending) and previous-stage segmentations, without the cases already written unless
        ``overwrite``."""
        ending = self.dataset_json["file_ending"]
        if isinstance(list_of_lists_or_source_folder, str):
            list_of_lists_or_source_folder = list_cases(list_of_lists_or_source_folder, ending,
                                                        len(expected_channel_names(self.dataset_json))).cases
        cases = list_of_lists_or_source_folder[part_id::num_parts]
        names = [os.path.basename(files[0])[:-(len(ending) + 5)] for files in cases]
        outputs = output_folder_or_list_of_truncated_output_files
        if isinstance(outputs, str):
            output_files = [os.path.join(outputs, name) for name in names]
        else:
            output_files = outputs[part_id::num_parts] if isinstance(outputs, list) else None
        seg_files = [None if folder_with_segs_from_prev_stage is None else
                     os.path.join(folder_with_segs_from_prev_stage, name + ending) for name in names]
        print(f"Part {part_id} of {num_parts} (counted from 0): {len(cases)} case(s)")
        if not overwrite and output_files is not None:
            written = (ending, ".npz") if save_probabilities else (ending,)
            left = [i for i, output in enumerate(output_files)
                    if not all(os.path.isfile(output + suffix) for suffix in written)]
            print(f"{len(cases) - len(left)} of them already predicted (kept, overwrite is off)")
            cases, output_files, seg_files = ([items[i] for i in left] for items in (cases, output_files, seg_files))
        return cases, output_files, seg_files

    def _preprocess_cases(self, input_list_of_lists, seg_from_prev_stage_files, output_filenames_truncated):
        """Reads, checks and preprocesses each case; yields the network input, or the reason it failed."""
        reader = self.plans_manager.image_reader_writer_class()
        configuration = self.preprocessing_configuration()
        on_device = (TorchCasePreprocessor(self.plans_manager, configuration, self.device)
                     if self.input_resampling == "torch" and TorchCasePreprocessor.handles(configuration) else None)
        stock = configuration.preprocessor_class(verbose=self.verbose_preprocessing)
        for index, files in enumerate(input_list_of_lists):
            ofile = output_filenames_truncated[index] if output_filenames_truncated is not None else None
            seg_file = seg_from_prev_stage_files[index] if seg_from_prev_stage_files is not None else None
            case = os.path.basename(ofile) if ofile is not None else os.path.basename(files[0])
            timings = {"case": case}
            try:
                start = time.perf_counter()
                images, properties = read_case(files, self.dataset_json, reader, self.allow_nonfinite)
                timings["read_s"] = time.perf_counter() - start
                start = time.perf_counter()
                if on_device is not None and seg_file is None:
                    data = on_device.run(images, properties)
                    _synchronize(self.device)
                else:
                    data = self._preprocess_stock(stock, configuration, images, properties, seg_file, reader)
                timings["preprocess_s"] = time.perf_counter() - start
                yield {"data": data, "data_properties": properties, "ofile": ofile, "case": case,
                       "timings": timings}
            except Exception as error:  # reported by name at the end; the other cases go on
                yield {"error": _failure(error), "ofile": ofile, "case": case}

    def _preprocess_stock(self, preprocessor, configuration: ConfigurationManager, images: np.ndarray,
                          properties: dict, seg_file: str | None, reader) -> torch.Tensor:
        """nnU-Net's ``run_case_npy`` (with the previous stage's segmentation stacked on, for cascades)."""
        seg = None
        if seg_file is not None:
            verify_voxels(seg_file)
            seg = reader.read_seg(seg_file)[0]
        data, seg, _ = preprocessor.run_case_npy(images, seg, properties, self.plans_manager, configuration,
                                                 self.dataset_json)  # fills in ``properties``
        if seg_file is not None:
            one_hot = convert_labelmap_to_one_hot(seg[0], self.label_manager.foreground_labels, data.dtype)
            data = np.vstack((data, one_hot))
        return torch.from_numpy(data).to(dtype=torch.float32, memory_format=torch.contiguous_format)

    def _internal_get_data_iterator_from_lists_of_filenames(self, input_list_of_lists, seg_from_prev_stage_files,
                                                            output_filenames_truncated, num_processes):
        return _in_background(self._preprocess_cases(input_list_of_lists, seg_from_prev_stage_files,
                                                     output_filenames_truncated))

    def predict_from_files_sequential(self, list_of_lists_or_source_folder,
                                      output_folder_or_list_of_truncated_output_files,
                                      save_probabilities: bool = False, overwrite: bool = True,
                                      folder_with_segs_from_prev_stage: str | None = None):
        """Same as ``predict_from_files`` here: this predictor never starts worker processes."""
        return self.predict_from_files(list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
                                       save_probabilities=save_probabilities, overwrite=overwrite,
                                       folder_with_segs_from_prev_stage=folder_with_segs_from_prev_stage)

    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """Like nnU-Net's, but the logits stay on the device when ``perform_everything_on_device``; with
        ``manual_initialization(parameters=None)`` the network's current weights are used."""
        prediction = None
        for params in self.list_of_parameters or [None]:
            if params is not None:
                unwrapped(self.network).load_state_dict(params)
            logits = self.predict_sliding_window_return_logits(data)
            if not self.perform_everything_on_device:
                logits = logits.to("cpu")
            prediction = logits if prediction is None else prediction + logits
        if self.list_of_parameters and len(self.list_of_parameters) > 1:
            prediction /= len(self.list_of_parameters)
        return prediction

    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        """nnU-Net's: (C, x, y[, z]) input -> (classes, x, y[, z]) logits (half precision) from Gaussian-weighted
        tiles, padded to at least the patch size; on the device when ``perform_everything_on_device``, falling back
        to the CPU when the device runs out of memory. Autocast on CUDA only (nnU-Net: slow or unsupported
        elsewhere)."""
        if not isinstance(input_image, torch.Tensor) or input_image.ndim != 4:
            raise ValueError("input_image must be a 4D torch.Tensor (c, x, y, z)")
        self.network = self.network.to(self.device)
        self.network.eval()
        empty_cache(self.device)
        with torch.autocast(self.device.type, enabled=True) if self.device.type == "cuda" else nullcontext():
            if self.verbose:
                print(f"Input shape: {input_image.shape}, step_size: {self.tile_step_size}, mirror_axes: "
                      f"{self.allowed_mirroring_axes if self.use_mirroring else None}")
            data, revert_padding = pad_nd_image(input_image, self.configuration_manager.patch_size, "constant",
                                                {"value": 0}, True, None)
            slicers = self._internal_get_sliding_window_slicers(data.shape[1:])
            if self.perform_everything_on_device and self.device.type != "cpu":
                try:
                    logits = self._internal_predict_sliding_window_return_logits(data, slicers, True)
                except RuntimeError:
                    print("Prediction on device was unsuccessful, probably due to a lack of memory. Moving results "
                          "arrays to CPU")
                    empty_cache(self.device)
                    logits = self._internal_predict_sliding_window_return_logits(data, slicers, False)
            else:
                logits = self._internal_predict_sliding_window_return_logits(data, slicers,
                                                                             self.perform_everything_on_device)
            empty_cache(self.device)
            return logits[(slice(None), *revert_padding[1:])]

    def _internal_get_sliding_window_slicers(self, image_size: tuple[int, ...]) -> list[tuple]:
        """nnU-Net's tiles, in its order: each slice's tiles for a 2d model on a volume, else the volume's."""
        patch_size = self.configuration_manager.patch_size

        def tiles(image_size: tuple[int, ...]) -> list[tuple[slice, ...]]:
            steps = compute_steps_for_sliding_window(image_size, patch_size, self.tile_step_size)
            return [tuple(slice(start, start + size) for start, size in zip(corner, patch_size, strict=True))
                    for corner in itertools.product(*steps)]

        if len(patch_size) == len(image_size):
            return [(slice(None), *tile) for tile in tiles(image_size)]
        if len(patch_size) != len(image_size) - 1:
            raise ValueError(f"patch size {patch_size} does not fit an image of size {image_size}")
        slice_tiles = tiles(image_size[1:])
        return [(slice(None), index, *tile) for index in range(image_size[0]) for tile in slice_tiles]

    @torch.inference_mode()
    def _internal_maybe_mirror_and_predict(self, x: torch.Tensor) -> torch.Tensor:
        """nnU-Net's: the network's logits, averaged over every combination of the allowed mirrorings when
        ``use_mirroring``."""
        prediction = self.network(x)
        mirror_axes = self.allowed_mirroring_axes if self.use_mirroring else None
        if mirror_axes is not None:
            if max(mirror_axes) > x.ndim - 3:
                raise ValueError(f"mirror axes {mirror_axes} do not fit a {x.ndim - 2}d input")
            axes = [axis + 2 for axis in mirror_axes]
            combinations = [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
            for flipped in combinations:
                prediction += torch.flip(self.network(torch.flip(x, flipped)), flipped)
            prediction /= len(combinations) + 1
        return prediction

    @torch.inference_mode()
    def _internal_predict_sliding_window_return_logits(self, data: torch.Tensor, slicers: list[tuple],
                                                       do_on_device: bool = True) -> torch.Tensor:
        """nnU-Net's: tiles are copied to the device by a thread while the network runs; their Gaussian-weighted
        logits are summed in half precision and divided by the summed weights."""
        results_device = self.device if do_on_device else torch.device("cpu")
        empty_cache(self.device)
        data = data.to(results_device)
        logits = torch.zeros((self.label_manager.num_segmentation_heads, *data.shape[1:]), dtype=torch.half,
                             device=results_device)
        weights = torch.zeros(data.shape[1:], dtype=torch.half, device=results_device)
        gaussian = compute_gaussian(tuple(self.configuration_manager.patch_size), sigma_scale=1. / 8,
                                    value_scaling_factor=10, device=results_device) if self.use_gaussian else 1
        tiles = ((torch.clone(data[slicer][None], memory_format=torch.contiguous_format).to(self.device), slicer)
                 for slicer in slicers)
        with tqdm(total=len(slicers), disable=not self.allow_tqdm) as progress:
            for tile, slicer in _in_background(tiles, prefetch=2, name="tiles"):
                prediction = self._internal_maybe_mirror_and_predict(tile)[0].to(results_device)
                if self.use_gaussian:
                    prediction *= gaussian
                logits[slicer] += prediction
                weights[slicer[1:]] += gaussian
                progress.update()
        torch.div(logits, weights, out=logits)
        if torch.any(torch.isinf(logits)):
            raise RuntimeError("Encountered inf in predicted array. Aborting... If this problem persists, reduce "
                               "value_scaling_factor in compute_gaussian or increase the dtype of predicted_logits "
                               "to fp32")
        return logits

    def _predict_case(self, data, properties: dict, ofile: str | None, save_probabilities: bool,
                      timings: dict, writer: ThreadPoolExecutor):
        """Network and class decision here; the file is written by ``writer`` (returns its future)."""
        if isinstance(data, str):  # nnU-Net's numpy iterators may hand over a temporary .npy file
            path, data = data, torch.from_numpy(np.load(data))
            os.remove(path)
        if self.first_network_call is None:
            self.first_network_call = time.time()
        start = time.perf_counter()
        logits = self.predict_logits_from_preprocessed_data(data)
        _synchronize(self.device)
        timings["network_s"] = time.perf_counter() - start
        start = time.perf_counter()
        if save_probabilities:  # probabilities are needed in the original geometry: nnU-Net's stock export
            from nnunetv2.inference.export_prediction import (
                convert_predicted_logits_to_segmentation_with_correct_shape,
                export_prediction_from_logits,
            )

            logits = logits.cpu()
            if ofile is not None:
                export_prediction_from_logits(logits, properties, self.configuration_manager, self.plans_manager,
                                              self.dataset_json, ofile, True)
                result = ofile + self.dataset_json["file_ending"]
            else:
                result = convert_predicted_logits_to_segmentation_with_correct_shape(
                    logits, self.plans_manager, self.configuration_manager, self.label_manager, properties, True)
            timings["export_s"] = time.perf_counter() - start
            return result
        segmentation = segmentation_from_logits_fast(logits, self.plans_manager, self.label_manager, properties,
                                                     self.label_resampling)
        del logits
        timings["export_s"] = time.perf_counter() - start
        if ofile is None:
            return segmentation

        def write() -> str:
            start = time.perf_counter()
            path = write_segmentation(segmentation, properties, ofile, self.plans_manager, self.dataset_json)
            timings["write_s"] = time.perf_counter() - start
            return path

        return writer.submit(write)

    def predict_from_data_iterator(self, data_iterator, save_probabilities: bool = False,
                                   num_processes_segmentation_export: int = 1):
        """Predicts each case here and writes it in a background thread while the next one is predicted; failed
        cases are collected, see :class:`CasesFailedError`. Returns the segmentations (or written paths when output
        files are given)."""
        self.failed_cases, self.case_timings = {}, []
        outcomes: list[tuple[str, object]] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export") as writer:
            for item in data_iterator:
                ofile = item["ofile"]
                case = item.get("case") or (os.path.basename(ofile) if ofile else f"array {len(outcomes)}")
                if "error" in item:
                    print(f"\nSkipping {case}: {item['error']}")
                    self.failed_cases[case] = item["error"]
                    continue
                print(f"\nPredicting {case}:")
                timings = item.get("timings", {"case": case})
                self.case_timings.append(timings)
                if len(outcomes) > 1 and isinstance(outcomes[-2][1], Future):
                    # the previous case is written while this one runs through the network; the one before it
                    # must be done (writes run in order): at most two label maps are held
                    outcomes[-2][1].exception()
                try:
                    outcomes.append((case, self._predict_case(item["data"], item["data_properties"], ofile,
                                                              save_probabilities, timings, writer)))
                except Exception as error:  # one bad case must not lose the others
                    self.failed_cases[case] = _failure(error)
                    print(f"Failed {case}: {self.failed_cases[case]}")
                    empty_cache(self.device)
        results = []
        for case, outcome in outcomes:
            try:
                results.append(outcome.result() if isinstance(outcome, Future) else outcome)
            except Exception as error:
                self.failed_cases[case] = _failure(error)
                print(f"Failed to write {case}: {self.failed_cases[case]}")
        compute_gaussian.cache_clear()
        empty_cache(self.device)
        if self.failed_cases:
            raise CasesFailedError(self.failed_cases, results)
        return results


def _synchronize(device: torch.device) -> None:
    """Waits for the device, so that a phase's time is its own (the next step needs the result anyway)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

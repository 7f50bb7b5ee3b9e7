"""``nnUNetPredictorFast``: nnU-Net's predictor with the paper's inference order and per-case error handling.

Only small methods of ``nnUNetPredictor`` are overridden; file handling (``predict_from_files``, ``-num_parts``,
``--continue_prediction``), the sliding window (Gaussian weighting, autocast on CUDA) and the writer stay nnU-Net's.
What changes:

* preprocessing runs in a background thread of this process (no spawned workers to start) and resamples the input
  with torch on the compute device instead of scipy (``input_resampling="nnunet"`` keeps the plans' function, for
  the closest agreement with stock predictions);
* logits stay on the device; the class decision is made there at network resolution, and only the uint8 label map
  is resampled to the original geometry (:mod:`nnunetv2_uda.inference.export`);
* no test-time mirroring by default;
* a case that cannot be predicted is reported by name and skipped; the others are still written, and
  :class:`CasesFailedError` is raised at the end.
"""

from __future__ import annotations

import os
import queue
import threading
import traceback
from collections.abc import Iterator
from copy import deepcopy

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import subfiles
from nnunetv2.inference.export_prediction import (
    convert_predicted_logits_to_segmentation_with_correct_shape,
    export_prediction_from_logits,
)
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian
from nnunetv2.utilities.helpers import empty_cache
from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from nnunetv2.utilities.utils import create_paths_fn, get_identifiers_from_splitted_dataset_folder
from torch._dynamo import OptimizedModule

from nnunetv2_uda.inference.export import segmentation_from_logits_fast, write_segmentation
from nnunetv2_uda.inference.input_checks import check_case_files
from nnunetv2_uda.inference.label_resampling import LABEL_RESAMPLING_MODES

TORCH_INPUT_RESAMPLING = "resample_torch_fornnunet"  # nnU-Net's own torch resampling function
INPUT_RESAMPLING_MODES = ("torch", "nnunet")
DEFAULT_DEVICE = torch.device("cuda")


class CasesFailedError(RuntimeError):
    """Some cases could not be predicted; all others were. ``failures`` maps case -> reason; ``results`` holds the
    returned segmentations of the successful cases when no output files were requested."""

    def __init__(self, failures: dict[str, str], results: list | None = None):
        self.failures = dict(failures)
        self.results = results or []
        lines = "\n".join(f"  {case}: {reason}" for case, reason in self.failures.items())
        super().__init__(f"{len(self.failures)} case(s) could not be predicted:\n{lines}")


def _in_background(items: Iterator[dict], prefetch: int = 1) -> Iterator[dict]:
    """Runs ``items`` in a thread, ``prefetch`` items ahead, so that preprocessing overlaps with prediction."""
    buffer: queue.Queue = queue.Queue(maxsize=prefetch)
    end = object()

    def produce():
        try:
            for item in items:
                buffer.put(item)
        except BaseException as error:  # handed over to the consumer, which re-raises it
            buffer.put(error)
        buffer.put(end)

    threading.Thread(target=produce, daemon=True).start()
    while (item := buffer.get()) is not end:
        if isinstance(item, BaseException):
            raise item
        yield item


class nnUNetPredictorFast(nnUNetPredictor):
    """Drop-in replacement for ``nnUNetPredictor`` (same constructor, plus ``label_resampling`` and
    ``input_resampling``; TTA off by default). Initialize with ``initialize_from_trained_model_folder`` or
    ``manual_initialization`` as usual."""

    def __init__(self, tile_step_size: float = 0.5, use_gaussian: bool = True, use_mirroring: bool = False,
                 perform_everything_on_device: bool = True, device: torch.device = DEFAULT_DEVICE,
                 verbose: bool = False, verbose_preprocessing: bool = False, allow_tqdm: bool = True,
                 label_resampling: str = "nearest", input_resampling: str = "torch"):
        if label_resampling not in LABEL_RESAMPLING_MODES:
            raise ValueError(f"label_resampling must be one of {LABEL_RESAMPLING_MODES}, got '{label_resampling}'")
        if input_resampling not in INPUT_RESAMPLING_MODES:
            raise ValueError(f"input_resampling must be one of {INPUT_RESAMPLING_MODES}, got '{input_resampling}'")
        super().__init__(tile_step_size, use_gaussian, use_mirroring, perform_everything_on_device, device, verbose,
                         verbose_preprocessing, allow_tqdm)
        self.label_resampling = label_resampling
        self.input_resampling = input_resampling
        self.failed_cases: dict[str, str] = {}

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

    def _preprocess_cases(self, input_list_of_lists, seg_from_prev_stage_files, output_filenames_truncated):
        configuration_manager = self.preprocessing_configuration()
        preprocessor = configuration_manager.preprocessor_class(verbose=self.verbose_preprocessing)
        for index, files in enumerate(input_list_of_lists):
            ofile = output_filenames_truncated[index] if output_filenames_truncated is not None else None
            seg_file = seg_from_prev_stage_files[index] if seg_from_prev_stage_files is not None else None
            case = os.path.basename(ofile) if ofile is not None else os.path.basename(files[0])
            try:
                check_case_files(files, self.dataset_json)
                data, seg, properties = preprocessor.run_case(files, seg_file, self.plans_manager,
                                                              configuration_manager, self.dataset_json)
                if seg_file is not None:
                    one_hot = convert_labelmap_to_one_hot(seg[0], self.label_manager.foreground_labels, data.dtype)
                    data = np.vstack((data, one_hot))
                data = torch.from_numpy(data).to(dtype=torch.float32, memory_format=torch.contiguous_format)
                yield {"data": data, "data_properties": properties, "ofile": ofile, "case": case}
            except Exception as error:  # reported by name at the end; the other cases go on
                yield {"error": f"{type(error).__name__}: {error}", "ofile": ofile, "case": case}

    def _manage_input_and_output_lists(self, list_of_lists_or_source_folder, *args, **kwargs):
        """nnU-Net's, but a source folder is listed in this process: nnU-Net forks a pool of 12 copies of the
        (torch-sized) process just to group the file names by case."""
        if isinstance(list_of_lists_or_source_folder, str):
            folder, ending = list_of_lists_or_source_folder, self.dataset_json["file_ending"]
            files = subfiles(folder, suffix=ending, join=False, sort=True)
            list_of_lists_or_source_folder = [create_paths_fn(folder, files, ending, case) for case in
                                              get_identifiers_from_splitted_dataset_folder(folder, ending)]
        return super()._manage_input_and_output_lists(list_of_lists_or_source_folder, *args, **kwargs)

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
                network = self.network._orig_mod if isinstance(self.network, OptimizedModule) else self.network
                network.load_state_dict(params)
            logits = self.predict_sliding_window_return_logits(data)
            if not self.perform_everything_on_device:
                logits = logits.to("cpu")
            prediction = logits if prediction is None else prediction + logits
        if self.list_of_parameters and len(self.list_of_parameters) > 1:
            prediction /= len(self.list_of_parameters)
        return prediction

    def _predict_case(self, data, properties: dict, ofile: str | None, save_probabilities: bool):
        if isinstance(data, str):  # nnU-Net's numpy iterators may hand over a temporary .npy file
            path, data = data, torch.from_numpy(np.load(data))
            os.remove(path)
        logits = self.predict_logits_from_preprocessed_data(data)
        if save_probabilities:  # probabilities are needed in the original geometry: nnU-Net's stock export
            logits = logits.cpu()
            if ofile is not None:
                return export_prediction_from_logits(logits, properties, self.configuration_manager,
                                                     self.plans_manager, self.dataset_json, ofile, True)
            return convert_predicted_logits_to_segmentation_with_correct_shape(
                logits, self.plans_manager, self.configuration_manager, self.label_manager, properties, True)
        segmentation = segmentation_from_logits_fast(logits, self.plans_manager, self.label_manager, properties,
                                                     self.label_resampling)
        del logits
        if ofile is not None:
            return write_segmentation(segmentation, properties, ofile, self.plans_manager, self.dataset_json)
        return segmentation

    def predict_from_data_iterator(self, data_iterator, save_probabilities: bool = False,
                                   num_processes_segmentation_export: int = 1):
        """Predicts and exports each case in this process; failed cases are collected, see
        :class:`CasesFailedError`. Returns the segmentations (or written paths when output files are given)."""
        self.failed_cases = {}
        results = []
        for item in data_iterator:
            ofile = item["ofile"]
            case = item.get("case") or (os.path.basename(ofile) if ofile else f"array {len(results)}")
            if "error" in item:
                print(f"\nSkipping {case}: {item['error']}")
                self.failed_cases[case] = item["error"]
                continue
            print(f"\nPredicting {case}:")
            try:
                results.append(self._predict_case(item["data"], item["data_properties"], ofile, save_probabilities))
            except Exception as error:  # one bad case must not lose the others
                print(f"Failed {case}: {type(error).__name__}: {error}")
                traceback.print_exc()
                self.failed_cases[case] = f"{type(error).__name__}: {error}"
                empty_cache(self.device)
        compute_gaussian.cache_clear()
        empty_cache(self.device)
        if self.failed_cases:
            raise CasesFailedError(self.failed_cases, results)
        return results

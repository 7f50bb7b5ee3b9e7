"""nnUNetv2_predict_fast against stock nnUNetv2_predict on the tiny trained model, bad input, in-process API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import TINY_SPACING, dice, make_tiny_case, write_nifti

from nnunetv2_uda.inference.cli import build_parser


def model_args(model) -> list[str]:
    return ["-d", model.dataset_id, "-c", model.configuration, "-tr", model.trainer, "-p", model.plans,
            "-f", model.fold, "-device", "cpu", "-step_size", "0.5", "--disable_progress_bar"]


@pytest.fixture(scope="module")
def test_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    image, _ = make_tiny_case(seed=100)
    write_nifti(image[:, 6:58, 4:56], folder / "case_a_0000.nii.gz", TINY_SPACING)  # the model's own spacing
    # other spacing, origin and direction: input and output resampling both happen, geometry must survive
    image = sitk.GetImageFromArray(make_tiny_case(seed=101)[0][:20])
    image.SetSpacing((0.9, 0.9, 3.0))
    image.SetOrigin((10.0, -5.0, 3.0))
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(folder / "case_b_0000.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def stock_and_fast(tiny_trained_model, test_images, run_command, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("predictions")
    run_command(["nnUNetv2_predict", "-i", test_images, "-o", out / "stock", *model_args(tiny_trained_model),
                 "--disable_tta", "-npp", "0", "-nps", "0"])
    run_command(["nnUNetv2_predict_fast", "-i", test_images, "-o", out / "fast", *model_args(tiny_trained_model)])
    return out / "stock", out / "fast"


def test_fast_output_has_input_geometry_and_matches_stock(stock_and_fast, test_images):
    stock_folder, fast_folder = stock_and_fast
    for image_file in sorted(test_images.glob("*_0000.nii.gz")):
        name = image_file.name.replace("_0000", "")
        image, stock, fast = (sitk.ReadImage(str(p)) for p in (image_file, stock_folder / name, fast_folder / name))
        for written in (stock, fast):
            assert written.GetSize() == image.GetSize()
            assert written.GetSpacing() == pytest.approx(image.GetSpacing())
            assert written.GetOrigin() == pytest.approx(image.GetOrigin())
            assert written.GetDirection() == pytest.approx(image.GetDirection())
        stock_array, fast_array = sitk.GetArrayFromImage(stock), sitk.GetArrayFromImage(fast)
        assert fast_array.dtype == np.uint8
        if name == "case_a.nii.gz":
            # no resampling anywhere: same network, same tiles, so the decision must be the same voxel for voxel
            for label in np.union1d(np.unique(stock_array), np.unique(fast_array)):
                assert dice(stock_array == label, fast_array == label) == 1.0, (name, label)
        else:
            # interpolation differs (scipy cubic input / linear logits vs torch linear input / nearest labels); a
            # briefly trained model has near-tied logits, so only broad agreement is expected here
            assert np.mean(stock_array == fast_array) > 0.8


def test_bad_input_is_named_others_are_predicted(tiny_trained_model, test_images, tmp_path, nnunet_env):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good_0000.nii.gz").write_bytes((test_images / "case_a_0000.nii.gz").read_bytes())
    for channel in ("0000", "0001"):
        (inputs / f"twochannels_{channel}.nii.gz").write_bytes((test_images / "case_a_0000.nii.gz").read_bytes())
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((30, 30), dtype=np.float32)), str(inputs / "flat_0000.nii.gz"))
    (inputs / "broken_0000.nii.gz").write_bytes(b"this is not an image")
    result = subprocess.run(["nnUNetv2_predict_fast", "-i", str(inputs), "-o", str(tmp_path / "out"),
                             *map(str, model_args(tiny_trained_model))], env=nnunet_env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0
    assert "3 case(s) could not be predicted" in result.stderr, result.stderr
    assert re.search(r"twochannels_0000\.nii\.gz, twochannels_0001\.nii\.gz: 2 channel file\(s\), but the model "
                     r"expects 1", result.stderr)
    assert re.search(r"flat_0000\.nii\.gz: is a 2D image", result.stderr)
    assert re.search(r"broken_0000\.nii\.gz: cannot be read as an image", result.stderr)
    written = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    assert written == ["good.nii.gz"]


def test_in_process_api_for_other_modules(tiny_trained_model, test_images):
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    from nnunetv2_uda.inference.predictor import nnUNetPredictorFast

    found = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "inference"), "nnUNetPredictorFast",
                                        "nnunetv2.inference")
    assert found is nnUNetPredictorFast  # name lookups (e.g. from plans or trainers) reach our class

    predictor = nnUNetPredictorFast(device=torch.device("cpu"), allow_tqdm=False, label_resampling="linear")
    predictor.initialize_from_trained_model_folder(str(tiny_trained_model.model_folder), ("all",))
    files = [[str(test_images / "case_a_0000.nii.gz")]]
    from_files = predictor.predict_from_files_sequential(files, None)
    assert len(from_files) == 1 and from_files[0].shape == (32, 52, 52) and from_files[0].dtype == np.uint8

    # as a trainer would: network and managers handed over, no parameter list
    manual = nnUNetPredictorFast(device=torch.device("cpu"), allow_tqdm=False, label_resampling="linear")
    manual.manual_initialization(predictor.network, predictor.plans_manager, predictor.configuration_manager, None,
                                 predictor.dataset_json, predictor.trainer_name, None)
    np.testing.assert_array_equal(manual.predict_from_files(files, None, num_processes_preprocessing=1)[0],
                                  from_files[0])


def test_nnunet_input_resampling_preprocesses_exactly_like_stock(tiny_trained_model, test_images):
    from nnunetv2_uda.inference.predictor import nnUNetPredictorFast

    files = [str(test_images / "case_b_0000.nii.gz")]  # other spacing: the input is resampled
    preprocessed = {}
    for mode in ("torch", "nnunet"):
        predictor = nnUNetPredictorFast(device=torch.device("cpu"), allow_tqdm=False, input_resampling=mode)
        predictor.initialize_from_trained_model_folder(str(tiny_trained_model.model_folder), ("all",))
        preprocessed[mode] = next(predictor._preprocess_cases([files], None, None))["data"].numpy()
    manager = predictor.configuration_manager
    stock, _, _ = manager.preprocessor_class(verbose=False).run_case(files, None, predictor.plans_manager, manager,
                                                                       predictor.dataset_json)
    np.testing.assert_array_equal(preprocessed["nnunet"], stock)
    assert preprocessed["torch"].shape == stock.shape and not np.array_equal(preprocessed["torch"], stock)
    with pytest.raises(ValueError, match="input_resampling"):
        nnUNetPredictorFast(device=torch.device("cpu"), input_resampling="cubic")


def test_command_accepts_every_nnUNetv2_predict_flag(monkeypatch, capsys):
    from nnunetv2.inference.predict_from_raw_data import predict_entry_point

    monkeypatch.setattr(sys, "argv", ["nnUNetv2_predict", "-h"])
    with pytest.raises(SystemExit):
        predict_entry_point()
    stock_flags = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w]*)", capsys.readouterr().out.split("options:")[1]))
    ours = {flag for action in build_parser()._actions for flag in action.option_strings}
    assert stock_flags and stock_flags <= ours, stock_flags - ours
    defaults = build_parser().parse_args(["-i", "a", "-o", "b", "-d", "1", "-c", "2d"])
    assert not defaults.enable_tta and defaults.step_size == 0.5 and defaults.label_resampling == "nearest"
    assert defaults.input_resampling == "torch"

"""nnUNetv2_predict_fast against stock nnUNetv2_predict on the tiny trained model, bad input, in-process API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from commands import run_in_process
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


@pytest.mark.slow
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


def _run_fast(args: list, env: dict) -> subprocess.CompletedProcess:
    return run_in_process("nnUNetv2_predict_fast", *args, env=env)


def _assert_named_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, no traceback, and one error line (argparse's usage line aside) naming every fragment."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("nnUNetv2_predict_fast: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.mark.slow
def test_bad_input_is_named_others_are_predicted(tiny_trained_model, test_images, tmp_path, nnunet_env):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = (test_images / "case_a_0000.nii.gz").read_bytes()
    (inputs / "good_0000.nii.gz").write_bytes(good)
    for channel in ("0000", "0001"):
        (inputs / f"twochannels_{channel}.nii.gz").write_bytes(good)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((30, 30), dtype=np.float32)), str(inputs / "flat_0000.nii.gz"))
    (inputs / "broken_0000.nii.gz").write_bytes(b"this is not an image")
    (inputs / "nosuffix.nii.gz").write_bytes(good)
    (inputs / "cut_0000.nii.gz").write_bytes(good[:len(good) // 2])  # SimpleITK alone reads it, zero-filled
    image = sitk.ReadImage(str(test_images / "case_a_0000.nii.gz"))
    array = sitk.GetArrayFromImage(image)
    array[3, 4, 5] = np.nan  # ITK's reader alone turns it into 0
    with_nan = sitk.GetImageFromArray(array)
    with_nan.CopyInformation(image)
    sitk.WriteImage(with_nan, str(inputs / "nan_0000.nii.gz"))
    # leftovers of a killed writer: hidden, never cases
    (inputs / ".tmp_leftover_0000.nii.gz").write_bytes(good)
    (inputs / ".partial-123-x_0000.nii.gz-abc").mkdir()
    (inputs / ".partial-123-x_0000.nii.gz-abc" / "x_0000.nii.gz").write_bytes(good)

    result = _run_fast(["-i", inputs, "-o", tmp_path / "out", *model_args(tiny_trained_model)], nnunet_env)
    _assert_named_error(result, "6 case(s) could not be predicted",
                        "twochannels_0000.nii.gz, twochannels_0001.nii.gz: 2 channel file(s), but the model expects 1",
                        "flat_0000.nii.gz: is a 2D image", "broken_0000.nii.gz: cannot be read as an image",
                        "nosuffix.nii.gz: not named <case>_0000.nii.gz", "cut_0000.nii.gz: truncated",
                        "nan_0000.nii.gz: 1 voxel(s) are NaN or infinite")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["good.nii.gz"]

    allowed = _run_fast(["-i", inputs, "-o", tmp_path / "allowed", *model_args(tiny_trained_model),
                         "--allow_nonfinite"], nnunet_env)
    _assert_named_error(allowed, "5 case(s) could not be predicted")
    assert "nan_0000.nii.gz: 1 NaN or infinite voxel(s) replaced by" in allowed.stderr
    assert sorted(p.name for p in (tmp_path / "allowed").glob("*.nii.gz")) == ["good.nii.gz", "nan.nii.gz"]
    assert not [p for p in (tmp_path / "allowed").iterdir() if p.name.startswith(".")]


@pytest.fixture
def untrained_model(tmp_path) -> tuple[dict, list[str]]:
    """A model folder with what the command reads before the network (dataset.json, plans.json), for the checks
    that need no trained model; returns the environment and the model's flags."""
    results = tmp_path / "results"
    folder = results / "Dataset950_Fake" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_all").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "file_ending": ".nii.gz",
                                                     "labels": {"background": 0, "liver": 1}, "numTraining": 1}))
    (folder / "plans.json").write_text(json.dumps({"plans_name": "nnUNetPlans", "configurations": {}}))
    env = {**os.environ, "nnUNet_results": str(results), "nnUNet_raw": str(tmp_path / "raw"),
           "nnUNet_preprocessed": str(tmp_path / "preprocessed")}
    (tmp_path / "images").mkdir()
    write_nifti(make_tiny_case(seed=7)[0], tmp_path / "images" / "case_0000.nii.gz")
    return env, ["-d", "950", "-c", "3d_fullres", "-f", "all", "-device", "cpu", "--disable_progress_bar"]


def test_crafted_checkpoint_runs_nothing(untrained_model, tmp_path):
    """nnU-Net's predictor loads checkpoints with weights_only=False: a crafted pickle runs a command."""
    env, flags = untrained_model
    marker = tmp_path / "marker"
    checkpoint = Path(env["nnUNet_results"]) / "Dataset950_Fake" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / \
        "fold_all" / "checkpoint_final.pth"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"network_weights": {}, "trainer_name": "nnUNetTrainer", "evil": Evil()}, checkpoint)
    result = _run_fast(["-i", tmp_path / "images", "-o", tmp_path / "out", *flags], env)
    _assert_named_error(result, f"{checkpoint}: refused")
    assert not marker.exists()


def test_a_broken_plans_json_is_named(untrained_model, tmp_path):
    env, flags = untrained_model
    plans = Path(env["nnUNet_results"]) / "Dataset950_Fake" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "plans.json"
    plans.write_text('{"plans_name": "nnUNetPlans", "configurations"')  # cut short
    torch.save({"network_weights": {}, "trainer_name": "nnUNetTrainer"}, plans.parent / "fold_all" /
               "checkpoint_final.pth")
    result = _run_fast(["-i", tmp_path / "images", "-o", tmp_path / "out", *flags], env)
    _assert_named_error(result, f"{plans}: not valid JSON")
    assert "not the plans.json nnU-Net keeps with a trained model" in result.stderr


@pytest.mark.parametrize(("extra", "fragments"), [
    (["-step_size", "0"], ["-step_size", "in (0, 1]", "'0'"]),
    (["-step_size", "2"], ["-step_size", "'2'"]),
    (["-step_size", "nan"], ["-step_size", "'nan'"]),
    (["-num_parts", "0"], ["-num_parts", "positive integer"]),
    (["-part_id", "-1"], ["-part_id", "'-1'"]),
    (["-part_id", "2", "-num_parts", "2"], ["-part_id 2: must be smaller than -num_parts (2)"]),
    (["-f", "first"], ["-f", "'first'"]),
    (["-d", "951"], ["-d 951"]),
    (["-i", "{missing}"], ["missing: input folder does not exist"]),
    (["-i", "{empty}"], ["empty: no image files ending in .nii.gz", "<case>_0000.nii.gz"]),
    (["-o", "{images}"], ["is the input"]),
    (["-o", "{images}/predictions"], ["lies inside the input"]),
], ids=["step_0", "step_2", "step_nan", "num_parts_0", "part_id_negative", "part_id_too_large", "fold_name",
        "unknown_dataset", "missing_input", "empty_input", "output_is_input", "output_inside_input"])
def test_bad_arguments_are_named_before_any_model_loads(untrained_model, tmp_path, extra, fragments):
    env, flags = untrained_model
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    places = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "images": tmp_path / "images"}
    extra = [value.format(**places) for value in extra]
    args = ["-i", tmp_path / "images", "-o", tmp_path / "out", *flags]
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args = [*args[:args.index(flag) + 1], value, *args[args.index(flag) + 2:]] if flag in args else \
            [*args, flag, value]
    result = _run_fast(args, env)
    _assert_named_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_a_file_of_the_users_with_a_segmentations_name_is_refused_not_replaced(untrained_model, tmp_path):
    """An output folder may hold the user's files: one named like a segmentation this prediction writes is never
    replaced without --overwrite (nnU-Net's own predictor silently replaces it)."""
    env, flags = untrained_model
    out = tmp_path / "out"
    out.mkdir()
    (out / "case.nii.gz").write_bytes(b"the user's own file")
    (out / "notes.txt").write_text("kept")
    result = _run_fast(["-i", tmp_path / "images", "-o", out, *flags], env)
    _assert_named_error(result, "already holds case.nii.gz", "--overwrite", "--continue_prediction")
    both = _run_fast(["-i", tmp_path / "images", "-o", out, *flags, "--overwrite", "--continue_prediction"], env)
    _assert_named_error(both, "--overwrite and --continue_prediction: choose one")
    assert (out / "case.nii.gz").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["case.nii.gz", "notes.txt"]


def test_listing_groups_channels_names_misnamed_files_and_ignores_hidden_ones(tmp_path):
    from nnunetv2_uda.inference.cases import InputFolderError, list_cases

    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "nosuffix.nii.gz", ".tmp_c_0000.nii.gz",
                 "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".partial-1-d_0000.nii.gz-x").mkdir()
    (tmp_path / "e_0000.nii.gz").mkdir()  # a folder is not an image file
    listing = list_cases(tmp_path, ".nii.gz", 2)
    assert listing.cases == [[str(tmp_path / "a_0000.nii.gz"), str(tmp_path / "a_0001.nii.gz")]]
    assert sorted(listing.failures) == ["b", "nosuffix.nii.gz"]
    assert "b_0000.nii.gz: 1 channel file(s), but the model expects 2 (_0000 .. _0001)" in listing.failures["b"]
    assert "rename it to nosuffix_0000.nii.gz" in listing.failures["nosuffix.nii.gz"]
    with pytest.raises(InputFolderError, match="no image files ending in .nrrd"):
        list_cases(tmp_path, ".nrrd", 1)
    with pytest.raises(InputFolderError, match="does not exist"):
        list_cases(tmp_path / "missing", ".nii.gz", 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_named(untrained_model, tmp_path):
    env, flags = untrained_model
    flags = [flag if flag != "cpu" else "cuda" for flag in flags]
    _assert_named_error(_run_fast(["-i", tmp_path / "images", "-o", tmp_path / "out", *flags], env),
                        "-device cuda: no CUDA device")


@pytest.mark.slow
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


@pytest.mark.slow
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

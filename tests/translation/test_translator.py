"""Translator training (checkpoints, resume, refusal of other configurations) and translation of a dataset."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import fields

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from commands import run_in_process

from nnunetv2_uda.atomic_files import is_hidden
from nnunetv2_uda.checkpoints import load_checkpoint
from nnunetv2_uda.output_folders import OutputFolderError
from nnunetv2_uda.translation.raw_dataset import DatasetError, open_raw_dataset
from nnunetv2_uda.translation.settings import TranslatorSettings, TranslatorSettingsError
from nnunetv2_uda.translation.slices import extract_slices
from nnunetv2_uda.translation.translate import load_generator, translate_dataset, translate_volume
from nnunetv2_uda.translation.translator import (
    CHECKPOINT_FILE,
    LOSS_PLOT_FILE,
    PROGRESS_FILE,
    TranslatorConfigError,
    train_translator,
)

pytestmark = pytest.mark.usefixtures("single_thread")

SINGLE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = {"iterations": 4, "checkpoint_every": 2, "batch_size": 2, "slice_size": 32, "inplane_spacing": 1.6,
        "max_slices_per_case": 4}
SETTING_NAMES = {setting.name for setting in fields(TranslatorSettings)}


def _train(ct, mri, folder, **options):
    """``train_translator`` with TINY's settings; ``options`` override them or give the API's other arguments."""
    options = {**TINY, **options}
    settings = TranslatorSettings(**{key: value for key, value in options.items() if key in SETTING_NAMES})
    return train_translator(ct, mri, folder, settings, **{k: v for k, v in options.items() if k not in SETTING_NAMES})


def _write(array, path, spacing_zyx, origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(reversed(spacing_zyx)))
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def _phantom(shape, seed):
    """A body with one 'organ' ellipsoid; returns (label, body mask, organ mask)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    body = (y / 0.8) ** 2 + (x / 0.9) ** 2 < 1
    c = rng.uniform(-0.2, 0.2, 2)
    organ = ((y - c[0]) / 0.4) ** 2 + ((x - c[1]) / 0.3) ** 2 + (z / 0.8) ** 2 < 1
    return (organ & body).astype(np.uint8), body, organ & body


def _dataset(folder, channel, cases, labeled):
    (folder / "imagesTr").mkdir(parents=True)
    if labeled:
        (folder / "labelsTr").mkdir()
    for i in range(cases):
        if channel == "CT":
            label, body, organ = _phantom((8, 40, 40), i)
            image = np.where(organ, 120.0, np.where(body, -60.0, -1000.0)) + np.random.default_rng(i).normal(0, 10,
                                                                                                              body.shape)
            spacing = (2.5, 0.8, 0.8)
        else:
            label, body, organ = _phantom((6, 36, 44), 10 + i)
            image = np.where(organ, 900.0, np.where(body, 300.0, 5.0))
            spacing = (5.0, 1.0, 1.0)
        _write(image.astype(np.float32), folder / "imagesTr" / f"case{i}_0000.nii.gz", spacing, (3.0, -2.0, 1.0 + i))
        if labeled:
            _write(label, folder / "labelsTr" / f"case{i}.nii.gz", spacing, (3.0, -2.0, 1.0 + i))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": channel}, "labels": {"background": 0,
                                         "liver": 1}, "numTraining": cases, "file_ending": ".nii.gz"}))
    return folder




@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    return _dataset(root / "Dataset960_CT", "CT", 2, True), _dataset(root / "Dataset961_MRI", "MRI", 2, False)


@pytest.fixture(scope="module")
def trained(datasets, tmp_path_factory):
    ct, mri = datasets
    return _train(ct, mri, tmp_path_factory.mktemp("translator") / "asit")


class Killed(Exception):
    pass


def _weights(folder):
    return load_checkpoint(folder / CHECKPOINT_FILE)["model"]["T_t"]


@pytest.mark.slow
def test_training_writes_checkpoint_progress_and_loss_curves(trained):
    progress = json.loads((trained / PROGRESS_FILE).read_text())
    assert progress["iteration"] == 4 and progress["finished"] and len(progress["history"]) == 4
    assert set(progress["history"][0]) >= {"total", "adversarial", "cycle", "identity"}
    assert not any("anatomy" in step for step in progress["history"])  # the paper's objective unless asked
    assert (trained / LOSS_PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((trained / "config.json").read_text())
    assert config["lambda_cycle"] == 10.0 and config["lambda_anatomy"] == 0.0
    assert not list(trained.glob(".tmp*"))


@pytest.mark.slow
def test_killed_run_resumes_at_its_checkpoint(datasets, trained, tmp_path):
    ct, mri = datasets

    def kill_after_first_checkpoint(iteration):
        raise Killed(iteration)

    with pytest.raises(Killed):
        _train(ct, mri, tmp_path, on_checkpoint=kill_after_first_checkpoint)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["iteration"] == 2

    checkpoints_written = []
    _train(ct, mri, tmp_path, on_checkpoint=checkpoints_written.append)
    assert checkpoints_written == [4]  # continued from iteration 2, not from scratch
    resumed, straight = _weights(tmp_path), _weights(trained)
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)  # same result as the uninterrupted run


def test_checkpoint_from_other_configuration_is_refused(datasets, trained):
    ct, mri = datasets
    with pytest.raises(TranslatorConfigError, match="lambda_cycle: checkpoint 10.0 vs requested 3.0"):
        _train(ct, mri, trained, lambda_cycle=3.0)
    with pytest.raises(TranslatorConfigError, match="mode"):
        _train(ct, mri, trained, mode="cyclegan")


def test_translate_keeps_geometry_labels_and_case_names(datasets, trained, tmp_path):
    ct, mri = datasets
    output = tmp_path / "Dataset962_FakeMRI"
    result = run_in_process("nnUNetv2_uda_translate", str(trained), str(ct), str(output), "--mri_dataset", str(mri))
    assert result.returncode == 0, result.stderr
    for i in range(2):
        source = sitk.ReadImage(str(ct / "imagesTr" / f"case{i}_0000.nii.gz"))
        fake = sitk.ReadImage(str(output / "imagesTr" / f"case{i}_0000.nii.gz"))
        for attribute in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
            assert getattr(fake, attribute)() == getattr(source, attribute)()
        assert np.isfinite(sitk.GetArrayFromImage(fake)).all()
        assert (output / "labelsTr" / f"case{i}.nii.gz").read_bytes() == \
            (ct / "labelsTr" / f"case{i}.nii.gz").read_bytes()
    dataset_json = json.loads((output / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "MRI"} and dataset_json["labels"] == {"background": 0, "liver": 1}
    assert dataset_json["uda_translation"] == {"mode": "asit", "translator": str(trained.resolve())}
    assert (output / "translation_panel.png").read_bytes()[:4] == b"\x89PNG"


def test_plain_cyclegan_ablation_translates_from_raw_intensities(datasets, tmp_path):
    ct, mri = datasets
    folder = _train(ct, mri, tmp_path / "cyclegan", mode="cyclegan", iterations=1)
    panel = translate_dataset(folder, ct, tmp_path / "fake", mri_dataset_folder=mri)
    assert panel.is_file()
    assert json.loads((tmp_path / "fake" / "dataset.json").read_text())["uda_translation"]["mode"] == "cyclegan"


@pytest.mark.slow
def test_unet_generator_with_anatomy_term_trains_from_the_command_line_and_translates(datasets, tmp_path):
    ct, mri = datasets
    folder = tmp_path / "unet"
    flags = [f"--{key}={value}" for key, value in TINY.items()]
    result = run_in_process("nnUNetv2_uda_train_translator", ct, mri, folder, "--generator", "unet",
                            "--lambda_anatomy", "5", *flags)
    assert result.returncode == 0, result.stderr
    config = json.loads((folder / "config.json").read_text())
    assert config["generator"] == "unet" and config["lambda_anatomy"] == 5.0
    assert all(step["anatomy"] > 0 for step in json.loads((folder / PROGRESS_FILE).read_text())["history"])
    assert any(key.startswith("decoders.") for key in _weights(folder))
    translate_dataset(folder, ct, tmp_path / "fake", mri_dataset_folder=mri)
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "fake" / "imagesTr" /
                                                                    "case0_0000.nii.gz")))).all()
    with pytest.raises(TranslatorConfigError, match="generator: checkpoint 'unet' vs requested 'resnet'"):
        _train(ct, mri, folder)


def test_flat_slices_are_left_out_of_the_slice_cache(tmp_path):
    folder = _dataset(tmp_path / "Dataset963_MRI", "MRI", 1, False)
    image_file = folder / "imagesTr" / "case0_0000.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(image_file)))
    array[:2] = 5.0  # two end slices of background only
    _write(array, image_file, (5.0, 1.0, 1.0))
    slices = extract_slices(open_raw_dataset(folder), "mri", "asit", 1.0, 32, 6)
    assert len(slices) == 4
    assert (slices.float().flatten(2).std(dim=2) > 0).all()

    _write(np.full_like(array, 5.0), image_file, (5.0, 1.0, 1.0))
    with pytest.raises(DatasetError, match="Dataset963_MRI' has no axial slice with any contrast"):
        extract_slices(open_raw_dataset(folder), "mri", "asit", 1.0, 32, 6)


def test_unfinished_translator_is_not_used(datasets, tmp_path):
    ct, mri = datasets
    with pytest.raises(Killed):
        _train(ct, mri, tmp_path, on_checkpoint=lambda i: (_ for _ in ()).throw(Killed()))
    with pytest.raises(TranslatorConfigError, match="stopped at iteration 2 of 4"):
        translate_dataset(tmp_path, ct, tmp_path / "fake")


def test_bad_datasets_are_named(datasets, tmp_path):
    ct, mri = datasets
    empty = tmp_path / "Dataset970_Empty"
    (empty / "imagesTr").mkdir(parents=True)
    (empty / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "file_ending": ".nii.gz"}))
    with pytest.raises(DatasetError, match="Dataset970_Empty' is empty"):
        _train(ct, empty, tmp_path / "t1")

    two_channels = tmp_path / "Dataset971_TwoChannels"
    two_channels.mkdir()
    (two_channels / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T2"}}))
    with pytest.raises(DatasetError, match="Dataset971_TwoChannels' has 2 channels"):
        _train(ct, two_channels, tmp_path / "t2")

    broken = _dataset(tmp_path / "Dataset972_Broken", "MRI", 1, False)
    (broken / "imagesTr" / "case0_0000.nii.gz").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="Dataset972_Broken': 1 of 1 image.*case0_0000.nii.gz: cannot be read"):
        _train(ct, broken, tmp_path / "t3")

    result = run_in_process("nnUNetv2_uda_train_translator", str(ct), str(empty), str(tmp_path / "t4"))
    assert result.returncode != 0 and "Dataset970_Empty' is empty" in result.stderr and "Traceback" not in result.stderr


class Evil:
    """A pickle that runs a command when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile_translator(trained, tmp_path):
    """A copy of a real translator folder whose checkpoint would run `touch marker` if unpickled."""
    folder = tmp_path / "hostile_translator"
    shutil.copytree(trained, folder)
    marker = tmp_path / "marker"
    torch.save({"config": {}, "model": Evil(marker)}, folder / CHECKPOINT_FILE)
    return folder, marker


def _one_line_error(result, *names):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"{result.args[0]}: error: "), result.stderr
    for name in names:
        assert str(name) in error, error
    return error


def test_translate_refuses_a_checkpoint_that_would_run_code(datasets, trained, tmp_path):
    ct, mri = datasets
    folder, marker = _hostile_translator(trained, tmp_path)
    output = tmp_path / "fake"
    result = run_in_process("nnUNetv2_uda_translate", str(folder), str(ct), str(output), "--mri_dataset", str(mri))
    _one_line_error(result, folder / CHECKPOINT_FILE, "refused")
    assert not marker.exists() and not output.exists()


def test_resumed_training_refuses_a_checkpoint_that_would_run_code(datasets, trained, tmp_path):
    ct, mri = datasets
    folder, marker = _hostile_translator(trained, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = run_in_process("nnUNetv2_uda_train_translator", ct, mri, folder,
                            *[f"--{key}={value}" for key, value in TINY.items()])
    _one_line_error(result, folder / CHECKPOINT_FILE, "refused")
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_translator_checkpoints_hold_only_tensors_and_plain_data(trained):
    checkpoint = torch.load(trained / CHECKPOINT_FILE, weights_only=True)  # no extra safe globals needed
    assert checkpoint["iteration"] == 4 and len(checkpoint["history"]) == 4
    assert checkpoint["rng"]["bit_generator"] == "PCG64" and checkpoint["torch_rng"].dtype == torch.uint8
    assert not [p.name for p in trained.iterdir() if is_hidden(p)]


# few checkpoints: each also draws the loss curves, which costs more than the iterations between them
KILL_RUN = {"iterations": 8, "checkpoint_every": 4, "batch_size": 1, "slice_size": 24, "inplane_spacing": 1.6,
            "max_slices_per_case": 4, "generator_features": 4, "residual_blocks": 1, "discriminator_features": 4}


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_run(datasets,
                                                                                                tmp_path):
    ct, mri = datasets
    folder = tmp_path / "killed"
    command = ["nnUNetv2_uda_train_translator", str(ct), str(mri), str(folder),
               *[f"--{key}={value}" for key, value in KILL_RUN.items()]]
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=SINGLE_THREAD_ENV)
        deadline = time.monotonic() + 300
        while not (folder / PROGRESS_FILE).exists():  # the first checkpoint is on disk
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.kill()
        assert process.wait() == -signal.SIGKILL
    killed_at = load_checkpoint(folder / CHECKPOINT_FILE)["iteration"]
    assert 2 <= killed_at < KILL_RUN["iterations"], "the run ended before it could be killed"

    resumed = subprocess.run(command, capture_output=True, text=True, env=SINGLE_THREAD_ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming from {folder / CHECKPOINT_FILE} at iteration {killed_at} of 8" in resumed.stdout

    straight = _train(ct, mri, tmp_path / "straight", **KILL_RUN)
    finished, expected = load_checkpoint(folder / CHECKPOINT_FILE), load_checkpoint(straight / CHECKPOINT_FILE)
    assert finished["history"] == expected["history"]  # every loss of every iteration, before and after the kill
    for network in ("T_t", "T_s", "D_t", "D_s"):
        weights, reference = finished["model"][network], expected["model"][network]
        assert all(torch.equal(weights[key], reference[key]) for key in reference), network


def test_a_folder_that_is_not_a_translator_folder_is_not_written_into(datasets, tmp_path):
    ct, mri = datasets
    folder = tmp_path / "my_results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=f"{folder} is not empty and is not a translator folder.*notes.txt"):
        _train(ct, mri, folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    with pytest.raises(OutputFolderError, match="lies inside the input"):
        _train(ct, mri, ct / "translator")
    assert not (ct / "translator").exists()


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("lambda_cycle", float("nan"), "--lambda_cycle must be a finite number >= 0, got nan"),
    ("lambda_identity", -1.0, "--lambda_identity must be a finite number >= 0, got -1.0"),
    ("lambda_anatomy", float("inf"), "--lambda_anatomy must be a finite number >= 0, got inf"),
    ("iterations", 0, "--iterations must be an integer >= 1, got 0"),
    ("batch_size", 0, "--batch_size must be an integer >= 1, got 0"),
    ("checkpoint_every", 0, "--checkpoint_every must be an integer >= 1, got 0"),
    ("inplane_spacing", -1.0, "--inplane_spacing must be a finite number > 0, got -1.0"),
    ("max_slices_per_case", 0, "--max_slices_per_case must be an integer >= 1, got 0"),
    ("generator_features", 0, "--generator_features must be an integer >= 1, got 0"),
    ("residual_blocks", -1, "--residual_blocks must be an integer >= 0, got -1"),
    ("slice_size", 20, "--slice_size must be a multiple of 4 and at least 24"),
    ("slice_size", 30, "--slice_size must be a multiple of 4 and at least 24"),
    ("batch_size", 2.5, "--batch_size must be an integer >= 1, got 2.5"),
    ("generator", "vit", "--generator must be one of"),
])
def test_nonsense_settings_are_refused_by_the_python_api_before_anything_is_written(datasets, tmp_path, setting,
                                                                                   value, message):
    ct, mri = datasets
    with pytest.raises(TranslatorSettingsError, match=re.escape(message)):
        _train(ct, mri, tmp_path / "translator", **{setting: value})
    assert not (tmp_path / "translator").exists()


def test_smallest_slice_size_and_no_residual_blocks_train(datasets, tmp_path):
    ct, mri = datasets
    folder = _train(ct, mri, tmp_path / "small", iterations=1, slice_size=24, residual_blocks=0)
    assert json.loads((folder / PROGRESS_FILE).read_text())["finished"]


def test_too_small_slice_size_is_one_line_naming_the_flag(datasets, tmp_path):
    ct, mri = datasets
    result = run_in_process("nnUNetv2_uda_train_translator", ct, mri, tmp_path / "translator", "--slice_size", "16")
    _one_line_error(result, "--slice_size must be a multiple of 4 and at least 24", "got 16")
    assert not (tmp_path / "translator").exists()


def test_translating_a_slice_smaller_than_the_generator_input_pads_it(trained):
    generator, config = load_generator(trained)
    volume = np.random.default_rng(0).normal(size=(2, 4, 4)).astype(np.float32)
    fake = translate_volume(generator, volume, (1.0, config.inplane_spacing, config.inplane_spacing),
                            config.inplane_spacing)
    assert fake.shape == (2, 4, 4) and np.isfinite(fake).all()


def test_translate_output_guard_and_overwrite_leave_no_stale_case(datasets, trained, tmp_path):
    ct, mri = datasets
    output = tmp_path / "Dataset964_FakeMRI"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="exists and is not empty.*--overwrite"):
        translate_dataset(trained, ct, output, mri_dataset_folder=mri)
    assert [p.name for p in output.iterdir()] == ["notes.txt"]
    with pytest.raises(OutputFolderError, match="lies inside the input"):
        translate_dataset(trained, ct, trained / "fake", mri_dataset_folder=mri)
    (output / "imagesTr").mkdir()
    (output / "imagesTr" / "stale_0000.nii.gz").write_bytes(b"from an earlier run")
    translate_dataset(trained, ct, output, mri_dataset_folder=mri, overwrite=True)
    assert sorted(p.name for p in (output / "imagesTr").iterdir()) == ["case0_0000.nii.gz", "case1_0000.nii.gz"]
    assert not (output / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset964_FakeMRI"]


def test_translate_names_bad_images_and_keeps_the_good_cases(trained, tmp_path, capsys):
    ct = _dataset(tmp_path / "Dataset965_CT", "CT", 3, True)
    truncated = ct / "imagesTr" / "case1_0000.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:-200])
    nan_image = ct / "imagesTr" / "case2_0000.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(nan_image)))
    array[3, 10, 10] = np.inf
    _write(array, nan_image, (2.5, 0.8, 0.8))
    output = tmp_path / "Dataset966_FakeMRI"
    with pytest.raises(DatasetError, match=r"2 of 3 case\(s\) left out.*case1_0000.nii.gz: truncated.*"
                                           r"case2_0000.nii.gz: 1 voxel\(s\) are NaN or infinite"):
        translate_dataset(trained, ct, output)
    assert sorted(p.name for p in (output / "imagesTr").iterdir()) == ["case0_0000.nii.gz"]
    assert sorted(p.name for p in (output / "labelsTr").iterdir()) == ["case0.nii.gz"]
    assert json.loads((output / "dataset.json").read_text())["numTraining"] == 1

    nan_only = tmp_path / "Dataset968_CT"
    shutil.copytree(ct, nan_only)
    (nan_only / "imagesTr" / "case1_0000.nii.gz").unlink()
    translate_dataset(trained, nan_only, tmp_path / "Dataset969_FakeMRI", allow_nonfinite=True)
    assert "case2_0000.nii.gz: 1 NaN or infinite voxel(s) replaced" in capsys.readouterr().err
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(
        str(tmp_path / "Dataset969_FakeMRI" / "imagesTr" / "case2_0000.nii.gz")))).all()


def test_training_names_every_bad_image_before_writing_anything(datasets, tmp_path):
    ct, _ = datasets
    mri = _dataset(tmp_path / "Dataset973_MRI", "MRI", 3, False)
    for case in ("case0", "case2"):
        path = mri / "imagesTr" / f"{case}_0000.nii.gz"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"2 of 3 image\(s\) cannot be used: .*case0_0000.nii.gz: truncated"
                                           r".*case2_0000.nii.gz: truncated"):
        _train(ct, mri, tmp_path / "translator")
    assert not (tmp_path / "translator").exists()

"""Translator training (checkpoints, resume, refusal of other configurations) and translation of a dataset."""

import json
import os
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2_uda.translation.raw_dataset import DatasetError, open_raw_dataset
from nnunetv2_uda.translation.slices import extract_slices
from nnunetv2_uda.translation.translate import translate_dataset
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
    return train_translator(ct, mri, tmp_path_factory.mktemp("translator") / "asit", **TINY)


class Killed(Exception):
    pass


def _weights(folder):
    return torch.load(folder / CHECKPOINT_FILE, weights_only=False)["model"]["T_t"]


def test_training_writes_checkpoint_progress_and_loss_curves(trained):
    progress = json.loads((trained / PROGRESS_FILE).read_text())
    assert progress["iteration"] == 4 and progress["finished"] and len(progress["history"]) == 4
    assert set(progress["history"][0]) >= {"total", "adversarial", "cycle", "identity"}
    assert not any("anatomy" in step for step in progress["history"])  # the paper's objective unless asked
    assert (trained / LOSS_PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((trained / "config.json").read_text())
    assert config["lambda_cycle"] == 10.0 and config["lambda_anatomy"] == 0.0
    assert not list(trained.glob(".tmp*"))


def test_killed_run_resumes_at_its_checkpoint(datasets, trained, tmp_path):
    ct, mri = datasets

    def kill_after_first_checkpoint(iteration):
        raise Killed(iteration)

    with pytest.raises(Killed):
        train_translator(ct, mri, tmp_path, **TINY, on_checkpoint=kill_after_first_checkpoint)
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["iteration"] == 2

    checkpoints_written = []
    train_translator(ct, mri, tmp_path, **TINY, on_checkpoint=checkpoints_written.append)
    assert checkpoints_written == [4]  # continued from iteration 2, not from scratch
    resumed, straight = _weights(tmp_path), _weights(trained)
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)  # same result as the uninterrupted run


def test_checkpoint_from_other_configuration_is_refused(datasets, trained):
    ct, mri = datasets
    with pytest.raises(TranslatorConfigError, match="lambda_cycle: checkpoint 10.0 vs requested 3.0"):
        train_translator(ct, mri, trained, **{**TINY, "lambda_cycle": 3.0})
    with pytest.raises(TranslatorConfigError, match="mode"):
        train_translator(ct, mri, trained, **{**TINY, "mode": "cyclegan"})


def test_translate_keeps_geometry_labels_and_case_names(datasets, trained, tmp_path):
    ct, mri = datasets
    output = tmp_path / "Dataset962_FakeMRI"
    result = subprocess.run(["nnUNetv2_uda_translate", str(trained), str(ct), str(output), "--mri_dataset", str(mri)],
                            capture_output=True, text=True, env=SINGLE_THREAD_ENV)
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
    folder = train_translator(ct, mri, tmp_path / "cyclegan", mode="cyclegan", **{**TINY, "iterations": 1})
    panel = translate_dataset(folder, ct, tmp_path / "fake", mri_dataset_folder=mri)
    assert panel.is_file()
    assert json.loads((tmp_path / "fake" / "dataset.json").read_text())["uda_translation"]["mode"] == "cyclegan"


def test_unet_generator_with_anatomy_term_trains_from_the_command_line_and_translates(datasets, tmp_path):
    ct, mri = datasets
    folder = tmp_path / "unet"
    flags = [f"--{key}={value}" for key, value in TINY.items()]
    result = subprocess.run(["nnUNetv2_uda_train_translator", str(ct), str(mri), str(folder), "--generator", "unet",
                             "--lambda_anatomy", "5", *flags], capture_output=True, text=True, env=SINGLE_THREAD_ENV)
    assert result.returncode == 0, result.stderr
    config = json.loads((folder / "config.json").read_text())
    assert config["generator"] == "unet" and config["lambda_anatomy"] == 5.0
    assert all(step["anatomy"] > 0 for step in json.loads((folder / PROGRESS_FILE).read_text())["history"])
    assert any(key.startswith("decoders.") for key in _weights(folder))
    translate_dataset(folder, ct, tmp_path / "fake", mri_dataset_folder=mri)
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "fake" / "imagesTr" /
                                                                    "case0_0000.nii.gz")))).all()
    with pytest.raises(TranslatorConfigError, match="generator: checkpoint 'unet' vs requested 'resnet'"):
        train_translator(ct, mri, folder, **TINY)


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
        train_translator(ct, mri, tmp_path, **TINY, on_checkpoint=lambda i: (_ for _ in ()).throw(Killed()))
    with pytest.raises(TranslatorConfigError, match="stopped at iteration 2 of 4"):
        translate_dataset(tmp_path, ct, tmp_path / "fake")


def test_bad_datasets_are_named(datasets, tmp_path):
    ct, mri = datasets
    empty = tmp_path / "Dataset970_Empty"
    (empty / "imagesTr").mkdir(parents=True)
    (empty / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "file_ending": ".nii.gz"}))
    with pytest.raises(DatasetError, match="Dataset970_Empty' is empty"):
        train_translator(ct, empty, tmp_path / "t1", **TINY)

    two_channels = tmp_path / "Dataset971_TwoChannels"
    two_channels.mkdir()
    (two_channels / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T2"}}))
    with pytest.raises(DatasetError, match="Dataset971_TwoChannels' has 2 channels"):
        train_translator(ct, two_channels, tmp_path / "t2", **TINY)

    broken = _dataset(tmp_path / "Dataset972_Broken", "MRI", 1, False)
    (broken / "imagesTr" / "case0_0000.nii.gz").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="Cannot read image '.*case0_0000.nii.gz'"):
        train_translator(ct, broken, tmp_path / "t3", **TINY)

    result = subprocess.run(["nnUNetv2_uda_train_translator", str(ct), str(empty), str(tmp_path / "t4")],
                            capture_output=True, text=True, env=SINGLE_THREAD_ENV)
    assert result.returncode != 0 and "Dataset970_Empty' is empty" in result.stderr and "Traceback" not in result.stderr

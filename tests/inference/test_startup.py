"""Start-up of fast prediction: only what prediction needs is imported, and the network is built without the
trainer where the trainer would build the same one (importing it imports nnU-Net's training stack)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

# each costs a second or more of start-up, and prediction needs none of them
HEAVY = ("torch._dynamo", "matplotlib", "seaborn", "nnunetv2.training.nnUNetTrainer.nnUNetTrainer",
         "nnunetv2.inference.predict_from_raw_data")

PREDICT = """
import json, sys
heavy = json.loads(sys.argv[1])
loaded = lambda: sorted(name for name in heavy if name in sys.modules)
import nnunetv2_uda.inference.cli
steps = {"cli": loaded() + (["torch"] if "torch" in sys.modules else [])}
import torch
from nnunetv2_uda.inference.predictor import nnUNetPredictorFast
steps["predictor"] = loaded()
predictor = nnUNetPredictorFast(device=torch.device("cpu"), allow_tqdm=False)
predictor.initialize_from_trained_model_folder(sys.argv[2], ("all",))
steps["model"] = loaded()
segmentation = predictor.predict_from_files([[sys.argv[3]]], None)[0]
steps["prediction"] = loaded()
print(json.dumps({"steps": steps, "shape": list(segmentation.shape)}))
"""

ASK = """
import json, sys
from nnunetv2_uda.inference.network import trainer_builds_plans_network
answers = {name: trainer_builds_plans_network(name) for name in sys.argv[1:]}
print(json.dumps({"answers": answers, "trainer_modules": sorted(name for name in sys.modules if ".training." in name
                                                                 and "Trainer" in name)}))
"""


def _python(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_which_trainers_build_the_plans_network_is_read_without_importing_them():
    names = {
        "nnUNetTrainer": True,
        "nnUNetTrainer_5epochs": True,  # nnU-Net's variant, a plain subclass
        "nnUNetTrainerUDAQuick_3epochs_40iters": True,  # our budget variant of a subclass of two subclasses
        "nnUNetTrainerUDAQuickPseudoLabelGINNoMirroring": True,  # diamonds of our and nnU-Net's subclasses
        "nnUNetTrainerBN": False,  # builds its own (batch norm)
        "nnUNetTrainerBN_5epochs": False,  # a budget variant of a trainer that builds its own
        "nnUNet_Primus_M_Trainer": False,
        "NoSuchTrainer": False,  # left to nnU-Net's lookup (and its error)
    }
    found = _python(ASK, *names)
    assert found["answers"] == names
    assert found["trainer_modules"] == []


@pytest.mark.slow
def test_prediction_imports_no_training_stack_nor_dynamo(tiny_trained_model):
    image = next(tiny_trained_model.images_folder.glob("*_0000.nii.gz"))
    found = _python(PREDICT, json.dumps(HEAVY), str(tiny_trained_model.model_folder), str(image))
    assert found["steps"] == {"cli": [], "predictor": [], "model": [], "prediction": []}
    assert len(found["shape"]) == 3


@pytest.mark.slow
def test_network_is_the_one_the_trainer_builds(tiny_trained_model):
    """Same modules, parameters and outputs as the trainer's ``build_network_architecture`` (our budget trainer:
    built from the plans) and, for a trainer that builds its own (batch norm), the trainer's network."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_uda.inference.network import build_network

    folder = tiny_trained_model.model_folder
    plans_manager = PlansManager(load_json(str(folder / "plans.json")))
    dataset_json = load_json(str(folder / "dataset.json"))
    configuration = plans_manager.get_configuration(tiny_trained_model.configuration)
    inputs = determine_num_input_channels(plans_manager, configuration, dataset_json)
    outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    x = torch.randn(1, inputs, *configuration.patch_size)
    for trainer in (tiny_trained_model.trainer, "nnUNetTrainerBN"):
        ours = build_network(trainer, plans_manager, configuration, inputs, outputs)
        theirs = recursive_find_trainer_class_by_name(trainer).build_network_architecture(
            plans_manager, configuration, inputs, outputs, enable_deep_supervision=False)
        assert repr(ours) == repr(theirs), trainer
        ours.load_state_dict(theirs.state_dict())
        with torch.inference_mode():
            torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))
    assert any(isinstance(module, torch.nn.BatchNorm2d) for module in ours.modules())

"""Packaging for nnunetv2-uda.

Besides the package, the wheel carries ``hooks/nnunetv2_uda.pth``: Python runs it at every interpreter start
(spawned nnU-Net workers included) and it teaches nnU-Net's class lookup to search our packages as well.
See docs/plugin_mechanism.md.
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HOOK_FILE = Path(__file__).parent / "hooks" / "nnunetv2_uda.pth"


class BuildPyWithHook(build_py):
    """Puts the .pth hook at the root of the wheel, which becomes site-packages on install.

    A regular build copies it next to the package in ``build_lib``. An editable build (PEP 660) only links the
    sources, so there the hook goes straight into the unpacked editable wheel (``install_lib``).
    """

    def _hook_target(self) -> Path:
        if getattr(self, "editable_mode", False):
            return Path(self.get_finalized_command("install").install_lib) / HOOK_FILE.name
        return Path(self.build_lib) / HOOK_FILE.name

    def run(self) -> None:
        super().run()
        self.copy_file(str(HOOK_FILE), str(self._hook_target()))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(self._hook_target())]


COMMANDS = {
    "nnUNetv2_uda_make_phantoms": "nnunetv2_uda.phantoms.cli:make_phantoms_entry",
    "nnUNetv2_uda_sobel": "nnunetv2_uda.translation.cli:sobel_entry",
    "nnUNetv2_uda_train_translator": "nnunetv2_uda.translation.cli:train_translator_entry",
    "nnUNetv2_uda_translate": "nnunetv2_uda.translation.cli:translate_entry",
    "nnUNetv2_uda_filter_pseudolabels": "nnunetv2_uda.pseudolabels.cli:filter_pseudolabels_entry",
    "nnUNetv2_uda_mdm": "nnunetv2_uda.pseudolabels.cli:mdm_entry",
    "nnUNetv2_uda_largest_component": "nnunetv2_uda.pseudolabels.cli:largest_component_entry",
    "nnUNetv2_predict_fast": "nnunetv2_uda.inference.cli:predict_fast_entry",
    "nnUNetv2_uda_evaluate": "nnunetv2_uda.evaluation.cli:evaluate_entry",
    "nnUNetv2_uda_profile": "nnunetv2_uda.evaluation.cli:profile_entry",
    "nnUNetv2_uda_run": "nnunetv2_uda.pipeline.cli:run_entry",
    "nnUNetv2_uda_demo": "nnunetv2_uda.pipeline.cli:demo_entry",
}

# Packages whose classes nnU-Net's lookups may name (planners, trainers, preprocessors, normalization schemes,
# resampling functions). Other plugins can add theirs to the same entry-point group.
CLASS_PACKAGES = {
    "planning": "nnunetv2_uda.planning",
    "training": "nnunetv2_uda.training",
    "translation": "nnunetv2_uda.translation",
    "inference": "nnunetv2_uda.inference",
}

setup(
    name="nnunetv2-uda",
    version="0.1.0",
    description="Unsupervised CT -> multi-sequence MRI domain adaptation for nnU-Net v2 (FLARE 2024 Task 3 method)",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunetv2_uda", "nnunetv2_uda.*"]),
    package_data={"nnunetv2_uda": ["recipes/*.yaml"]},  # the recipes nnUNetv2_uda_run --recipe NAME reads
    cmdclass={"build_py": BuildPyWithHook},
    install_requires=[
        "nnunetv2>=2.8.0,<2.9",
        "torch>=2.1",
        "dynamic-network-architectures>=0.4",
        "batchgenerators>=0.25",
        "batchgeneratorsv2>=0.3",
        "SimpleITK>=2.2",
        "acvl-utils>=0.2",
        "numpy",
        "scipy",
        "matplotlib",
        "tqdm",
        "PyYAML",
        "dask[distributed]>=2024.1",  # prediction parts as tasks (LocalCluster or any scheduler)
        "surface-distance==0.1",  # DeepMind's surface-element area table, for FLARE's NSD
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.6", "ruff"]},
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in COMMANDS.items()],
        "nnunetv2.class_packages": [f"{key} = {value}" for key, value in CLASS_PACKAGES.items()],
    },
)

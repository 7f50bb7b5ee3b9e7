"""The .pth hook: nnU-Net's own lookups find our classes, in fresh and spawned interpreters, and fail clearly."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib.metadata import distributions
from pathlib import Path

import pytest

from nnunetv2_uda import class_lookup

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    """A fresh interpreter, as nnU-Net's commands and workers get: only the .pth can have installed the hook."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_hook_file_is_installed_and_recorded_for_uninstall():
    site_packages = sysconfig.get_paths()["purelib"]  # not the source tree's egg-info, which lists no hook
    (dist,) = distributions(name="nnunetv2-uda", path=[site_packages])
    recorded = [f for f in dist.files if f.name == "nnunetv2_uda.pth"]
    assert len(recorded) == 1, "pip would not remove the hook on uninstall"
    assert recorded[0].parent == Path(""), "the hook must sit at the site-packages root to be executed"
    hook = Path(dist.locate_file(recorded[0])).read_text()
    assert hook == (REPO / "hooks" / "nnunetv2_uda.pth").read_text()


def test_hook_is_silent_when_the_package_is_gone(monkeypatch):
    """An editable install whose source folder was moved must not print a traceback at every Python start."""
    import importlib.util

    line = (REPO / "hooks" / "nnunetv2_uda.pth").read_text().strip()
    assert line.startswith("import ") and "\n" not in line  # site.py executes such lines, one each
    installs = []
    monkeypatch.setattr(class_lookup, "install", lambda: installs.append(1))
    exec(line, {})
    assert installs == [1]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    exec(line, {})
    assert installs == [1]


@pytest.mark.slow
def test_fresh_interpreter_finds_our_trainer_and_planner_through_nnunet():
    result = _python(
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
        "from nnunetv2.utilities.find_class_by_name import recursive_find_python_class\n"
        "import nnunetv2, os\n"
        "print(find('nnUNetTrainerUDASmall').__module__)\n"
        "root = os.path.join(nnunetv2.__path__[0], 'experiment_planning')\n"
        "print(recursive_find_python_class(root, 'nnUNetPlannerUDASmall', 'nnunetv2.experiment_planning').__module__)\n"
        "print(find('nnUNetTrainer').__module__)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["nnunetv2_uda.training.small_trainer", "nnunetv2_uda.planning.small_planner",
                                     "nnunetv2.training.nnUNetTrainer.nnUNetTrainer"]


@pytest.mark.slow
def test_spawned_worker_finds_our_classes():
    """nnU-Net preprocesses and exports in spawned workers: the hook must be active there without being asked."""
    result = _python(
        "import multiprocessing as mp\n"
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name\n"
        "if __name__ == '__main__':\n"
        "    with mp.get_context('spawn').Pool(1) as pool:\n"
        "        found = pool.apply(recursive_find_trainer_class_by_name, ('nnUNetTrainerUDASmall_3epochs',))\n"
        "        print(found.__name__)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nnUNetTrainerUDASmall_3epochs"


def test_missing_name_fails_naming_the_class_and_every_place_searched():
    from nnunetv2.preprocessing.resampling.utils import recursive_find_resampling_fn_by_name

    with pytest.raises(class_lookup.ClassNotFoundError) as error:
        recursive_find_resampling_fn_by_name("resample_with_a_typo")
    message = str(error.value)
    assert "'resample_with_a_typo'" in message
    assert "nnunetv2.preprocessing.resampling" in message
    for package in class_lookup.plugin_packages():
        assert package in message
    assert {"nnunetv2_uda.planning", "nnunetv2_uda.training"} <= set(class_lookup.plugin_packages())


def test_lookups_outside_nnunet_are_left_alone(tmp_path):
    """Searches of other folders (nnUNet_extTrainer, nnU-Net's own tests) keep nnU-Net's 'None if not found'."""
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    (tmp_path / "module.py").write_text("class Present:\n    pass\n")
    assert recursive_find_python_class(str(tmp_path), "Absent", None) is None
    assert recursive_find_python_class(str(tmp_path), "Present", None).__name__ == "Present"


@pytest.mark.slow
def test_external_trainer_folder_still_searched_after_ours(tmp_path, monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    package = tmp_path / "mytrainers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "trainer.py").write_text(
        "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
        "class MyExternalTrainer(nnUNetTrainer):\n    pass\n")
    monkeypatch.setenv("nnUNet_extTrainer", str(tmp_path))
    assert recursive_find_trainer_class_by_name("MyExternalTrainer").__name__ == "MyExternalTrainer"
    with pytest.raises(RuntimeError, match="Could not find requested nnunet trainer"):
        recursive_find_trainer_class_by_name("NoSuchTrainer")


def test_install_is_idempotent():
    before = len(sys.meta_path)
    class_lookup.install()
    class_lookup.install()
    assert len(sys.meta_path) == before


@pytest.mark.slow
def test_nnunets_own_unit_tests_pass_with_the_plugin_installed():
    """nnunetv2/tests minus integration_tests (those download data and train real models)."""
    import nnunetv2

    tests = Path(nnunetv2.__path__[0]) / "tests"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests),
                             "--ignore", str(tests / "integration_tests")],
                            capture_output=True, text=True, timeout=600, cwd=tests)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout

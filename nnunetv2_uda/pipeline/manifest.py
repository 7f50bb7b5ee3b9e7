"""The pipeline's memory between runs: which stage finished, on which inputs and settings, with which outputs.

A stage counts as finished only through its record here, and a record says ``finished`` only after the stage's
outputs are complete; the file itself is replaced atomically (:mod:`nnunetv2_uda.atomic_files`), so a kill at any
moment leaves either the old or the new manifest, never a half-written one. The manifest also holds the run's id,
which every dataset the run creates records as its owner, and the base of the dataset ids the run uses, so every rerun
finds its datasets under the same ids (:mod:`nnunetv2_uda.pipeline.datasets`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from nnunetv2_uda.atomic_files import write_json_atomically
from nnunetv2_uda.command_line import UserInputError
from nnunetv2_uda.json_files import read_json_object

MANIFEST_NAME = "manifest.json"
# what step records and their settings mean: raised whenever nnunetv2-uda changes that, so every step recorded under
# another number reruns instead of old records being read by special cases
SCHEMA_VERSION = 2  # 2: figures recorded by kind ('translation_figures', 'uncertainty_figures')
RECORD_KEYS = ("input_hash", "schema_version", "settings", "finished")  # what every record has from its start


class ManifestError(UserInputError):
    """A manifest.json that the runner did not write as it is."""


def hash_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


FINGERPRINT_BLOCK_BYTES = 1 << 16


def file_fingerprint(path: Path) -> str:
    """Size plus a digest of the file's first and last 64 KiB: a content identity that survives copies.

    Modification times change whenever data is copied or re-mounted, which would rerun a whole pipeline for nothing.
    The tail of a gzip file (.nii.gz) holds the CRC-32 of its whole content, so any edit to a compressed volume is
    seen; an uncompressed file edited only in its middle, keeping its size, is not.
    """
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BLOCK_BYTES))
        if size > FINGERPRINT_BLOCK_BYTES:
            handle.seek(max(FINGERPRINT_BLOCK_BYTES, size - FINGERPRINT_BLOCK_BYTES))
            digest.update(handle.read())
    return f"{size}:{digest.hexdigest()[:16]}"


def folder_fingerprint(folder: Path) -> str:
    """A cheap content identity of a user input folder: every file's relative name and ``file_fingerprint``.

    Where the folder lies is left out, so moving or copying the data does not rerun anything.
    """
    folder = Path(folder)
    entries = [(str(path.relative_to(folder)), file_fingerprint(path))
               for path in sorted(folder.rglob("*")) if path.is_file()]
    return hash_json(entries)


def _map_strings(value, function):
    if isinstance(value, dict):
        return {key: _map_strings(item, function) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, function) for item in value]
    return function(value) if isinstance(value, str) else value


class Manifest:
    """``<output_folder>/manifest.json``: the run's id and one record per stage.

    manifest = {"run_id": "<uuid>", "dataset_id_base": <int>, "stages": {<step>: record}}
    record = {"input_hash", "schema_version", "settings", "inputs", "outputs", "wall_time_s", "started_at",
              "finished_at", "finished"}

    Output paths under a root (the output folder, and nnU-Net's folders where given) are stored as ``$<root
    name>/<rest>`` and read back under the roots of the current run, so a run folder copied or moved together with
    its nnU-Net folders resumes from its own files, not from the place it was first run. A new run gets its id when
    the manifest is first written.
    """

    def __init__(self, folder: Path, roots: dict[str, Path] | None = None):
        self.path = Path(folder) / MANIFEST_NAME
        self.roots = {"output_folder": Path(folder), **(roots or {})}
        # every spelling of every root (as given and absolute), deepest first, so nested roots collapse to the closest
        self._root_forms = sorted(((form.rstrip(os.sep), name) for name, root in self.roots.items()
                                   for form in {str(root), os.path.abspath(root)}), key=lambda item: -len(item[0]))
        self.run_id = uuid.uuid4().hex
        self.dataset_id_base: int | None = None  # recorded when the run starts (runner.start_run)
        self.stages: dict[str, dict] = {}
        self.reload()

    def reload(self) -> None:
        if not self.path.is_file():
            return
        content = self._read()
        stages = content["stages"]
        for record in stages.values():
            if "outputs" in record:
                record["outputs"] = _map_strings(record["outputs"], self._expand)
        self.stages = stages
        self.run_id = content["run_id"]
        self.dataset_id_base = content.get("dataset_id_base", self.dataset_id_base)

    def _read(self) -> dict:
        """The file's content, checked to be what :meth:`save` writes; else a :class:`ManifestError` naming it."""
        restore = "restore the run's own manifest.json, or move this file away to run every step again"

        def refuse(problem: str) -> ManifestError:
            return ManifestError(f"{self.path}: {problem}; this is not a manifest as nnUNetv2_uda_run writes it: "
                                 f"{restore}")

        content = read_json_object(self.path, f"not a mapping with 'stages' as nnUNetv2_uda_run writes its manifest: "
                                              f"{restore}", ManifestError)
        if not isinstance(content.get("stages"), dict):
            raise refuse("'stages' is missing or not a mapping of step records")
        run_id = content.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise refuse(f"'run_id' is {run_id!r}, not the run's id")
        base = content.get("dataset_id_base")
        if base is not None and (isinstance(base, bool) or not isinstance(base, int) or not 1 <= base <= 999):
            raise refuse(f"'dataset_id_base' is {base!r}, not a dataset id")
        for name, record in content["stages"].items():
            if not isinstance(record, dict):
                raise refuse(f"the record of step '{name}' is a {type(record).__name__}, not a mapping")
            missing = [key for key in RECORD_KEYS if key not in record]
            if missing:
                raise refuse(f"the record of step '{name}' lacks {', '.join(repr(key) for key in missing)}")
            if not isinstance(record["settings"], dict) or not isinstance(record.get("inputs", {}), dict):
                raise refuse(f"the record of step '{name}' has 'settings' or 'inputs' that are not mappings")
            if not isinstance(record["finished"], bool) or not isinstance(record["input_hash"], str):
                raise refuse(f"the record of step '{name}' has a 'finished' that is not true or false or an "
                             f"'input_hash' that is not a string")
            schema = record["schema_version"]
            if isinstance(schema, bool) or not isinstance(schema, int):
                raise refuse(f"the record of step '{name}' has a 'schema_version' that is not a whole number")
            if record["finished"] and not isinstance(record.get("outputs"), dict):
                raise refuse(f"the record of step '{name}' is finished without a mapping of 'outputs'")
        return content

    def save(self) -> None:
        stages = {name: {**record, "outputs": _map_strings(record["outputs"], self._collapse)}
                  if "outputs" in record else record for name, record in self.stages.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        base = {"dataset_id_base": self.dataset_id_base} if self.dataset_id_base is not None else {}
        write_json_atomically({"run_id": self.run_id, **base, "stages": stages}, self.path)

    def _collapse(self, text: str) -> str:
        """An absolute or as-given path under a root -> ``$<root name>/<rest>`` (the deepest root wins)."""
        for form, name in self._root_forms:
            if text == form or text.startswith(form + os.sep):
                return f"${name}{text[len(form):]}"
        return text

    def _expand(self, text: str) -> str:
        name, separator, rest = text[1:].partition(os.sep)
        if text.startswith("$") and name in self.roots:
            return str(self.roots[name]) + separator + rest
        return text  # not a root-relative path

    def schema_version(self, stage: str) -> int | None:
        """The record schema the stage was recorded under (:data:`SCHEMA_VERSION`), None if it has no record."""
        record = self.stages.get(stage)
        return None if record is None else record["schema_version"]

    def is_current(self, stage: str, input_hash: str) -> bool:
        """The stage was recorded (finished or not) under this input hash and the current record schema."""
        record = self.stages.get(stage)
        return bool(record and record.get("input_hash") == input_hash
                    and self.schema_version(stage) == SCHEMA_VERSION)

    def is_finished(self, stage: str, input_hash: str) -> bool:
        return self.is_current(stage, input_hash) and self.stages[stage].get("finished") is True

    def mark_started(self, stage: str, input_hash: str, settings: dict, inputs: dict | None = None) -> None:
        self.stages[stage] = {"input_hash": input_hash, "schema_version": SCHEMA_VERSION, "settings": settings,
                              "inputs": inputs or {}, "finished": False,
                              "started_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.save()

    def mark_finished(self, stage: str, outputs: dict, wall_time_s: float) -> None:
        record = self.stages[stage]
        record.update(outputs=outputs, wall_time_s=round(wall_time_s, 2),
                      finished_at=time.strftime("%Y-%m-%d %H:%M:%S"))
        record["finished"] = True  # last: a record is only ever saved as finished together with its outputs
        self.save()

    def changed_settings(self, stage: str, settings: dict) -> list[str]:
        """Keys whose values differ from the stage's last recorded run (empty if only upstream changed)."""
        return self._changed_keys(stage, "settings", settings)

    def changed_inputs(self, stage: str, inputs: dict) -> list[str]:
        """Input folders (config keys) whose content fingerprint differs from the stage's last recorded run."""
        return self._changed_keys(stage, "inputs", inputs)

    def _changed_keys(self, stage: str, field: str, values: dict) -> list[str]:
        old = self.stages.get(stage, {}).get(field, {})
        return sorted(k for k in set(old) | set(values) if old.get(k) != values.get(k))

"""The pipeline's memory between runs: which stage finished, on which inputs and settings, with which outputs.

A stage counts as finished only through its record here, and a record says ``finished`` only after the stage's
outputs are complete; the file itself is replaced atomically (temporary file + rename), so a kill at any moment
leaves either the old or the new manifest, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

MANIFEST_NAME = "manifest.json"


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


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
    """``<output_folder>/manifest.json``: one record per stage.

    record = {"input_hash", "settings", "inputs", "outputs", "wall_time_s", "started_at", "finished_at", "finished"}

    Output paths under a root (the output folder, and nnU-Net's folders where given) are stored as ``$<root
    name>/<rest>`` and read back under the roots of the current run, so a run folder copied or moved together with
    its nnU-Net folders resumes from its own files, not from the place it was first run.
    """

    def __init__(self, folder: Path, roots: dict[str, Path] | None = None):
        self.path = Path(folder) / MANIFEST_NAME
        self.roots = {"output_folder": Path(folder), **(roots or {})}
        # every spelling of every root (as given and absolute), deepest first, so nested roots collapse to the closest
        self._root_forms = sorted(((form.rstrip(os.sep), name) for name, root in self.roots.items()
                                   for form in {str(root), os.path.abspath(root)}), key=lambda item: -len(item[0]))
        self.stages: dict[str, dict] = {}
        self.reload()

    def reload(self) -> None:
        if self.path.is_file():
            stages = json.loads(self.path.read_text()).get("stages", {})
            for record in stages.values():
                if "outputs" in record:
                    record["outputs"] = _map_strings(record["outputs"], self._expand)
            self.stages = stages

    def save(self) -> None:
        stages = {name: {**record, "outputs": _map_strings(record["outputs"], self._collapse)}
                  if "outputs" in record else record for name, record in self.stages.items()}
        atomic_write_text(self.path, json.dumps({"stages": stages}, indent=2, default=str))

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
        return text  # not a root-relative path, or a manifest written before paths were stored this way

    def is_finished(self, stage: str, input_hash: str) -> bool:
        record = self.stages.get(stage)
        return bool(record and record.get("finished") and record.get("input_hash") == input_hash)

    def mark_started(self, stage: str, input_hash: str, settings: dict, inputs: dict | None = None) -> None:
        self.stages[stage] = {"input_hash": input_hash, "settings": settings, "inputs": inputs or {},
                              "finished": False,
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

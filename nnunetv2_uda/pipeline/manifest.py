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


def folder_fingerprint(folder: Path) -> str:
    """A cheap identity of a user input folder: names, sizes and modification times of every file in it.

    Content hashes of thousands of volumes would take minutes per run; any edit changes size or mtime.
    """
    folder = Path(folder)
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return hash_json([str(folder.resolve()), entries])


class Manifest:
    """``<output_folder>/manifest.json``: one record per stage.

    record = {"input_hash", "settings", "outputs", "wall_time_s", "started_at", "finished_at", "finished"}
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / MANIFEST_NAME
        self.stages: dict[str, dict] = {}
        if self.path.is_file():
            self.stages = json.loads(self.path.read_text()).get("stages", {})

    def reload(self) -> None:
        if self.path.is_file():
            self.stages = json.loads(self.path.read_text()).get("stages", {})

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"stages": self.stages}, indent=2, default=str))

    def is_finished(self, stage: str, input_hash: str) -> bool:
        record = self.stages.get(stage)
        return bool(record and record.get("finished") and record.get("input_hash") == input_hash)

    def mark_started(self, stage: str, input_hash: str, settings: dict) -> None:
        self.stages[stage] = {"input_hash": input_hash, "settings": settings, "finished": False,
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
        old = self.stages.get(stage, {}).get("settings", {})
        return sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))

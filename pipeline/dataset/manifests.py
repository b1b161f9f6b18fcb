"""Shard manifests: the commit record of each shard, and what a run reads back from them.

A shard's manifest (``_manifests/shard-<digest>.json``) is written after its data files and
names them; a shard without one is not committed. Resume, retry, the selection and the
dataset card read the committed clips from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.dataset import schema
from pipeline.dataset.fs import ArrowStorage, Storage

MANIFESTS = "_manifests"


@dataclass(frozen=True)
class ShardSummary:
    """What one shard holds (also the body of its manifest).

    Attributes:
        name: shard name (``shard-<digest>``).
        clips: clip id -> {"outcome", "reason", "label", "tracks", "selected_tracks",
            "frames", "inlier_frames", "stage", "keypoint_source", "settings_hash"}.
        files: dataset -> file name written (datasets without rows have none).
        rows: dataset -> rows written.
    """

    name: str
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"shard": self.name, "schema_version": schema.SCHEMA_VERSION, "files": self.files,
                "rows": self.rows, "clips": self.clips}


def write_manifest(output: str, summary: ShardSummary, storage: Storage) -> None:
    """Commit a shard: write its manifest (after its data files)."""
    storage.write_bytes(storage.join(output, MANIFESTS, f"{summary.name}.json"),
                        json.dumps(summary.to_json(), sort_keys=True, indent=1).encode())


def manifest_files(manifest: dict[str, Any], dataset: str) -> list[str]:
    """File names of ``dataset`` a manifest commits (a name or a list of names)."""
    value = manifest.get("files", {}).get(dataset)
    return [] if not value else [value] if isinstance(value, str) else list(value)


def read_manifests(output: str, storage: Storage | None = None) -> list[dict[str, Any]]:
    """Every committed shard manifest under ``output`` (sorted by shard name)."""
    storage = storage or ArrowStorage()
    manifests = []
    for path in storage.list(storage.join(output, MANIFESTS)):
        if path.endswith(".json"):
            manifests.append(json.loads(storage.read_bytes(path)))
    return sorted(manifests, key=lambda m: m["shard"])


def completed_clips(output: str, storage: Storage | None = None) -> dict[str, dict[str, Any]]:
    """clip id -> its manifest entry, for every clip a committed shard holds (resume)."""
    done: dict[str, dict[str, Any]] = {}
    for manifest in read_manifests(output, storage):
        done.update(manifest["clips"])
    return done


def failed_clips(output: str, storage: Storage | None = None,
                 completed: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Sorted ids of the committed clips whose outcome is ``failed`` (a fault of the run,
    not a verdict on the input: a rerun tries them again).

    ``completed``: :func:`completed_clips` of the output when the caller already read it.
    """
    completed = completed_clips(output, storage) if completed is None else completed
    return sorted(k for k, v in completed.items() if v.get("outcome") == "failed")

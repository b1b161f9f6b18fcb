"""The dataset card: ``stats.json`` and ``README.md`` of an output, from its committed shards.

The card's default HuggingFace config, ``selected``, reads ``frames_selected/`` (the
frames of the selected tracks, :mod:`pipeline.dataset.selection.publish`), one HF split per
source split; ``frames``, ``tracks`` and ``rejected`` read the per-shard files.

The counts come from every committed manifest (all runs that wrote into the output), with
each clip's final outcome taken from the ``selection/`` table when there is one. The card's
front matter is HuggingFace's dataset metadata (configs, splits, features).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset import schema
from pipeline.dataset.books import count_track_verdicts
from pipeline.dataset.fs import ArrowStorage, Storage
from pipeline.dataset.manifests import manifest_files, read_manifests
from pipeline.dataset.selection.publish import SELECTED_VIEW
from pipeline.dataset.selection.table import clip_owners, read_selection_outcomes, read_selection_track_reasons
from pipeline.dataset.writer import COMMON_METADATA

STATS_FILE = "stats.json"
CARD_FILE = "README.md"


def _copy_rows(manifest: dict[str, Any], owners: dict[str, str]) -> Counter:
    """Rows of the clips of ``manifest`` that another shard owns (copies of a clip committed
    twice), per dataset, from the manifest's per-clip counts."""
    copies = [c for k, c in manifest["clips"].items() if owners[k] != manifest["shard"]]
    return Counter({"frames": sum(c.get("frames", 0) for c in copies), "tracks": sum(c.get("tracks", 0) for c in copies),
                    "rejected": sum(c.get("outcome") in ("rejected", "failed") for c in copies)})


def dataset_stats(output: str, storage: Storage | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts over every committed shard of the output (all runs that wrote into it); a clip
    committed by two shards (two runs at once into a remote output, a retried bundle) is
    counted once, in the shard that owns it (the first name), as the reader and the
    selection do."""
    manifests = read_manifests(output, storage)
    clips: dict[str, dict[str, Any]] = {}
    rows = Counter()
    files = Counter()
    splits: dict[str, set[str]] = {}
    owners = clip_owners(manifests)
    for manifest in manifests:
        clips.update({k: v for k, v in manifest["clips"].items() if owners[k] == manifest["shard"]})
        rows.update(manifest["rows"])
        rows.subtract(_copy_rows(manifest, owners))  # a clip committed twice is counted in its owner only
        files.update({d: 1 for d in manifest["files"]})
        for d in manifest["files"]:
            splits.setdefault(d, set()).update(f.split(".")[1] for f in manifest_files(manifest, d) if f.count(".") == 2)
    storage = storage or ArrowStorage()
    view = [p.replace("\\", "/").rsplit("/", 1)[-1] for p in storage.list(storage.join(output, SELECTED_VIEW))]
    view = [n for n in view if n.endswith(".parquet")]
    final = read_selection_outcomes(output, storage) or {}  # the selection/ table decides kept
    track_reasons = read_selection_track_reasons(output, storage) or {}
    clips = {k: {**v, **final.get(k, {})} for k, v in clips.items()}
    outcomes = Counter(c["outcome"] for c in clips.values())
    reasons = Counter(c["reason"] for c in clips.values() if c["outcome"] != "kept")
    kept_labels = Counter(c["label"] or "(none)" for c in clips.values() if c["outcome"] == "kept")
    stats = {
        "schema_version": schema.SCHEMA_VERSION,
        "clips": len(clips),
        "clips_kept": outcomes.get("kept", 0),
        "clips_rejected": outcomes.get("rejected", 0),
        "clips_failed": outcomes.get("failed", 0),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "tracks_fitted": sum(c["tracks"] for c in clips.values()),
        "tracks_selected": sum(c["selected_tracks"] for c in clips.values()),
        # every track row by where it ended, as the run summary and the per-clip log lines count
        "track_verdicts": count_track_verdicts(r for k in sorted(clips) for r in track_reasons.get(k, ())).to_json(),
        "frames_written": rows.get("frames", 0),
        "inlier_frames_selected": sum(c["inlier_frames"] for c in clips.values()),
        "rows": {d: rows.get(d, 0) for d in schema.DATASETS},
        "files": {d: files.get(d, 0) for d in schema.DATASETS},
        "splits": {d: sorted(splits.get(d, ())) for d in schema.DATASETS},
        "shards": len(manifests),
        "kept_clips_per_label": dict(sorted(kept_labels.items())),
        # the frames of the selected tracks, one file per shard and split (selection/publish.py)
        SELECTED_VIEW: {"files": len(view), "splits": sorted({n.split(".")[1] for n in view if n.count(".") == 2})},
    }
    if extra:
        stats.update(extra)
    return stats


SELECTED_CONFIG = "selected"
"""HF config of the selected tracks' frames (``frames_selected/``): the card's default."""
HF_SPLIT_NAMES = {"val": "validation", "valid": "validation", "validate": "validation"}
CITATION = """@inproceedings{arnab2019exploiting,
  title     = {Exploiting Temporal Context for {3D} Human Pose Estimation in the Wild},
  author    = {Arnab, Anurag and Doersch, Carl and Zisserman, Andrew},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019}
}"""


def size_category(n: int) -> str:
    """HuggingFace ``size_categories`` value of a row count."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return name
    return "1B<n<10B"


def _yaml_feature(value: dict[str, Any]) -> Any:
    """HF features JSON (``{"_type": "List", ...}``) -> the card's YAML form
    (``{"list": "float32", "length": 3}``, as ``datasets`` writes it)."""
    kind = value.get("_type")
    if kind == "Value":
        return value["dtype"]
    if kind in ("List", "LargeList", "Sequence"):
        inner = value.get("feature")
        out: dict[str, Any] = {"list": _yaml_feature(inner) if isinstance(inner, dict) and "_type" in inner
                               else [{"name": k, **_yaml_entry(v)} for k, v in inner.items()]}
        if value.get("length", -1) not in (-1, None):
            out["length"] = value["length"]
        return out
    return {"dtype": kind}


def _yaml_entry(value: dict[str, Any]) -> dict[str, Any]:
    converted = _yaml_feature(value)
    return {"dtype": converted} if isinstance(converted, str) else converted


def hf_card_metadata(stats: dict[str, Any], features: dict[str, dict[str, Any]] | None = None) -> str:
    """The YAML front matter of the card: licence placeholder, task and size categories,
    ``configs`` with one HF split per source split (``val`` -> ``validation``), the
    features of each config, and tags. JSON values are valid YAML."""
    lines = ["---", "license: other", "license_name: fill-in-the-licence-of-your-videos-and-body-model",
             "license_link: LICENSE", "pretty_name: vid2mesh pseudo-ground-truth SMPL fits",
             "task_categories:", "- keypoint-detection", "- image-to-3d",
             "size_categories:", f"- {size_category(int(stats.get('rows', {}).get('frames', 0)))}",
             "tags:", "- 3d-human-pose", "- smpl", "- human-mesh-recovery", "- pseudo-ground-truth", "configs:"]
    view = stats.get(SELECTED_VIEW) or {}
    # config name -> (folder, source split tags, features of)
    configs = {SELECTED_CONFIG: (SELECTED_VIEW, view.get("splits") or [], "frames")} if view.get("files") else {}
    configs.update({d: (d, stats.get("splits", {}).get(d) or [], d) for d in schema.DATASETS if stats["files"].get(d)})
    for config, (folder, tags, _) in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for tag in tags:
            lines += [f"  - split: {HF_SPLIT_NAMES.get(tag, tag)}", f"    path: {folder}/*.{tag}.parquet"]
        if not tags:
            lines += ["  - split: train", f"    path: {folder}/*.parquet"]
        if config == next(iter(configs)):
            lines.append("  default: true")
    if features:
        lines.append("dataset_info:")
        for config, (_, _, dataset) in configs.items():
            lines += [f"- config_name: {config}", "  features:"]
            lines += [f"  - {json.dumps({'name': name, **_yaml_entry(value)})}" for name, value in features[dataset].items()]
    lines.append("---")
    return "\n".join(lines) + "\n" if configs else ""


def dataset_card(stats: dict[str, Any], run: schema.RunMetadata, features: dict[str, dict[str, Any]] | None = None) -> str:
    """README.md of the output: the HF metadata block (:func:`hf_card_metadata`), the counts,
    how to load it and the citation. ``features``: dataset -> HF features JSON (default:
    the schema's)."""
    features = features or {d: schema.hf_features(d) for d in schema.DATASETS}
    front = hf_card_metadata(stats, features)
    body = run.body_model
    reasons = "\n".join(f"| {r} | {n} |" for r, n in stats["rejected_by_reason"].items()) or "| (none) | 0 |"
    labels = "\n".join(f"| {label} | {n} |" for label, n in stats["kept_clips_per_label"].items()) or "| (none) | 0 |"
    return f"""{front}
# vid2mesh pseudo-ground-truth dataset

SMPL fits of the people in video clips by whole-clip bundle adjustment (Arnab, Doersch,
Zisserman, CVPR 2019), written by `vid2mesh run`. Schema version {schema.SCHEMA_VERSION};
the columns, units and joint orders are documented in `docs/schema.md` of vid2mesh and in
each file's schema metadata.

Body model: **{body.variant}** ({body.gender}, `{body.file_name}`, sha256 `{body.sha256[:16]}...`){" - a generated stand-in, NOT the licensed SMPL model: for pipeline testing only" if body.variant == "standin" else ""}.
Code: {run.code_version}.

| | count |
| --- | --- |
| clips in | {stats["clips"]} |
| clips kept | {stats["clips_kept"]} |
| clips rejected | {stats["clips_rejected"]} |
| clips failed | {stats["clips_failed"]} |
| tracks fitted | {stats["tracks_fitted"]} |
| tracks selected | {stats["tracks_selected"]} |
| frames written (`frames/` rows) | {stats["frames_written"]} |
| inlier frames of selected tracks | {stats["inlier_frames_selected"]} |
| shards | {stats["shards"]} |

Rejections and failures by reason:

| reason | clips |
| --- | --- |
{reasons}

Kept clips per label:

| label | clips |
| --- | --- |
{labels}

Load with HuggingFace `datasets` (from this folder; one HF split per source split:
train, validation, ...; `unsplit` when the input had none):

```python
import datasets
# the training data: every frame of the selected tracks (the default config)
selected = datasets.load_dataset("<this folder>", "selected")            # a DatasetDict of splits
train = datasets.load_dataset("<this folder>", "selected", split="train").with_format("numpy")
# the same files without the card: {{split: "frames_selected/*.<split>.parquet"}}
# every committed frame, selected or not (track_selected says which), clip outcomes, tracks:
# datasets.load_dataset("<this folder>", "frames" | "rejected" | "tracks")
```

`frames_selected/` holds exactly the rows that vid2mesh's
`read_frames(OUTPUT, FrameFilter(selected_only=True))` returns. `frames/` also holds the
frames of tracks the selection did not keep (and, after an interrupted and resumed run,
copies of a clip committed twice): filter it on `track_selected`, which is True only on the
selected tracks' frames of the copy the selection counts. The selection's own tables are in
`selection/` (`tracks.parquet`: every track's verdict; `clips.parquet`: every clip's outcome).

## Fields

Columns of `frames/` and `frames_selected/` (each Parquet field carries its description and
unit in its field metadata; `tracks/` and `rejected/` are described the same way, and in
`docs/schema.md` of vid2mesh):

{_fields_table("frames")}

## Limitations

- These are pseudo-ground-truth fits, not measurements: SMPL parameters optimised to agree
  with automatically detected 2D keypoints over a whole clip. Depth, body shape and
  occluded limbs are weakly constrained; errors of the keypoint detector and the tracker
  (missed people, identity switches) pass into the fits.
- The camera is weak-perspective (scale and 2D translation): there is no metric
  translation, and `joints_3d` are in the body frame, without translation.
- The selection keeps the tracks with the lowest normalised energy (E_norm); it favours
  easy, well-detected people and motions, so the selected data are not a uniform sample of
  the source videos. `frames/` keeps the frames of every eligible track for re-selection.
- `inlier` marks frames whose reprojection energy is below the threshold; other frames of a
  selected track are regularised by the temporal and prior terms and should be weighted or
  filtered when training.
- The source videos' biases (who is filmed, doing what, where) are inherited.

## Licence

Fill in `license` above with the terms that apply before sharing this folder:

- The body-model outputs (`pose`, `betas`, `joints_3d`, `keypoints_3d`, `reprojection_2d`
  and every value computed from the fitted body) are derived from the SMPL model file the
  run used, so the SMPL model licence (smpl.is.tue.mpg.de) applies to them: it grants
  non-commercial research use only; commercial use needs a separate licence, and sharing
  data made with the model may need the licensor's permission. Read it before you publish
  or sell these fits.
- The source videos' licences apply to the clips, labels and anything derived from their
  frames (`keypoints_2d`, boxes, crops).
- A run with the generated stand-in body model (`variant: standin`) is not SMPL-derived,
  but its fits are for pipeline testing only.

Citation of the method:

```bibtex
{CITATION}
```
"""


def _fields_table(dataset: str) -> str:
    """Markdown table of a dataset's columns for the card: name, unit, meaning."""
    lines = ["| column | unit | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{c.name}` | {c.unit or '-'} | {c.description.replace('|', '/')} |" for c in schema.columns_of(dataset)]
    return "\n".join(lines)


def _written_features(output: str, storage: Storage) -> dict[str, dict[str, Any]]:
    """HF features of each dataset as its ``_common_metadata`` records them (the run's
    optional columns included), else the schema's."""
    features = {}
    for dataset in schema.DATASETS:
        features[dataset] = schema.hf_features(dataset)
        path = storage.join(output, dataset, COMMON_METADATA)
        try:
            if storage.exists(path):
                meta = pq.read_schema(pa.BufferReader(storage.read_bytes(path))).metadata or {}
                hf = json.loads(meta.get(schema.KEY_HUGGINGFACE.encode(), b"{}"))
                features[dataset] = hf.get("info", {}).get("features") or features[dataset]
        except (OSError, ValueError, pa.ArrowException):
            pass
    return features


def write_card(output: str, run: schema.RunMetadata, storage: Storage | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``stats.json`` and ``README.md`` from every committed shard; returns the stats."""
    storage = storage or ArrowStorage()
    stats = dataset_stats(output, storage, extra)
    storage.write_bytes(storage.join(output, STATS_FILE), (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode())
    storage.write_bytes(storage.join(output, CARD_FILE), dataset_card(stats, run, _written_features(output, storage)).encode())
    return stats

"""Input clips for the job: a glob of videos, a Kinetics CSV plus a video root, or a manifest.

Everything here is plain Python over injected file-system callables (``list_files``,
``read_text``), so the Beam layer can pass Beam's ``FileSystems`` (gs://, s3://...) and tests
can use the local disk. Bad input never raises per row: a bad CSV or manifest line becomes
a :class:`~pipeline.records.PerceptionResult` rejected with ``bad_input_row`` and a message
naming the file and line.

Clip ids are deterministic (:func:`pipeline.records.clip_id_for`): from the Kinetics file
name ``<youtube_id>_<start:06d>_<end:06d>`` or the CSV row; other file names get
``<stem>-<hash of the path relative to the glob root>``.

Precomputed keypoints (``docs/conventions.md``): next to the video as ``<stem>.coco.json``
or ``<stem>_openpose/``; under a keypoints root at ``<root>/<split>/<label>/<stem>.coco.json``
then ``<root>/<stem>.coco.json`` (and the ``_openpose`` folders at the same places).
"""

from __future__ import annotations

import csv
import dataclasses
import glob as globlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pipeline.records import ClipRef, PerceptionResult, RejectReason, clip_id_for, stable_hash

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
KINETICS_STEM = re.compile(r"^(?P<youtube_id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
SPLITS = {"train", "val", "validate", "validation", "test"}
COCO_SUFFIX = ".coco.json"
OPENPOSE_SUFFIX = "_openpose"

ListFiles = Callable[[str], list[str]]
ReadText = Callable[[str], str]
Exists = Callable[[str], bool]


def local_list_files(pattern: str) -> list[str]:
    """Files matching a local glob (``**`` recurses); a directory lists every file under it."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*")
    return sorted(p for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p))


def local_read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def local_exists(path: str) -> bool:
    return os.path.exists(path)


@dataclass(frozen=True)
class InputListing:
    """The clips of a run, as read from its input.

    Attributes:
        clips: clips to process, in a deterministic order (sorted by clip id).
        rejected: input-stage rejections (bad CSV/manifest rows, duplicates), as
            PerceptionResults with ``reject_reason`` set; they count as clips in.
        description: one line saying what was read (for logs).
    """

    clips: tuple[ClipRef, ...]
    rejected: tuple[PerceptionResult, ...] = ()
    description: str = ""

    @property
    def num_inputs(self) -> int:
        return len(self.clips) + len(self.rejected)


@dataclass(frozen=True)
class InputSpec:
    """Where the clips come from.

    Attributes:
        input: a glob or directory of videos, a Kinetics CSV (``.csv``), or a JSON-lines
            manifest (``.jsonl``).
        video_root: for a CSV, the folder holding the videos (default: the CSV's folder).
        input_format: "auto" (from the extension), "glob", "csv" or "manifest".
        limit: keep only the first N clips (by clip id) when > 0.
    """

    input: str
    video_root: str | None = None
    input_format: str = "auto"
    limit: int = 0
    extensions: tuple[str, ...] = field(default=VIDEO_EXTENSIONS)

    def resolved_format(self) -> str:
        if self.input_format != "auto":
            if self.input_format not in ("glob", "csv", "manifest"):
                raise ValueError(f"--input_format {self.input_format!r}: expected auto, glob, csv or manifest")
            return self.input_format
        lower = self.input.lower()
        if lower.endswith(".csv"):
            return "csv"
        if lower.endswith((".jsonl", ".ndjson", ".json")):
            return "manifest"
        return "glob"


def read_inputs(
    spec: InputSpec,
    list_files: ListFiles = local_list_files,
    read_text: ReadText = local_read_text,
) -> InputListing:
    """Read the run's clips from a glob, a Kinetics CSV or a manifest.

    Raises:
        FileNotFoundError: the CSV/manifest does not exist or the glob matches no video
            (a whole-run error, reported before the job starts).
    """
    kind = spec.resolved_format()
    if kind == "glob":
        listing = clips_from_glob(spec.input, list_files, spec.extensions)
    elif kind == "csv":
        listing = clips_from_kinetics_csv(spec.input, spec.video_root, list_files, read_text, spec.extensions)
    else:
        listing = clips_from_manifest(spec.input, read_text)
    if spec.limit > 0:
        listing = InputListing(listing.clips[: spec.limit], listing.rejected, listing.description + f" (limit {spec.limit})")
    return listing


def _is_url(path: str) -> bool:
    return "://" in path


def _join(root: str, *parts: str) -> str:
    if _is_url(root):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(root, *parts)


def _stem(path: str) -> str:
    name = PurePosixPath(path.replace("\\", "/")).name
    for ext in VIDEO_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def _glob_base(pattern: str) -> str:
    """The part of a glob before its first wildcard (a folder)."""
    cut = min((i for i, ch in enumerate(pattern) if ch in "*?["), default=len(pattern))
    head = pattern[:cut]
    return head if head.endswith(("/", os.sep)) or cut == len(pattern) else head.rsplit("/", 1)[0] + "/"


def clip_from_video_path(path: str, base: str = "") -> ClipRef:
    """A ClipRef for one video file; label and split from a ``<split>/<label>/`` layout.

    Args:
        path: the video's path or URL.
        base: the folder the run's glob starts at; ids of non-Kinetics names hash the
            path relative to it so that moving the corpus keeps the ids.
    """
    stem = _stem(path)
    parts = PurePosixPath(path.replace("\\", "/")).parts
    relative = path[len(base):] if base and path.startswith(base) else path
    split = parts[-3] if len(parts) >= 3 and parts[-3].lower() in SPLITS else ""
    in_folder = len(relative.strip("/").split("/")) >= 2
    label = parts[-2] if len(parts) >= 2 and (split or in_folder) else ""
    match = KINETICS_STEM.match(stem)
    if match:
        clip_id = clip_id_for(match["youtube_id"], int(match["start"]), int(match["end"]))
    else:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:80] or "clip"
        clip_id = f"{safe}-{stable_hash(relative.lstrip('/'))[:8]}"
    return ClipRef(clip_id=clip_id, uri=path, label=label, split=split)


def clips_from_glob(pattern: str, list_files: ListFiles = local_list_files, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> InputListing:
    """Every video matching ``pattern`` (or under it, for a directory).

    Files that are not videos by extension are left out when the pattern is a folder or
    ends in a wildcard such as ``*``; a pattern that names them explicitly (``*.txt``) keeps
    them, so the perception stage rejects them with a reason.
    """
    files = list_files(pattern)
    ext = os.path.splitext(pattern.replace("\\", "/").rsplit("/", 1)[-1])[1].lower()
    keep_all = bool(ext) and not any(ch in ext for ch in "*?[")
    videos = [f for f in files if keep_all or f.lower().endswith(extensions)]
    videos = [f for f in videos if not _is_sidecar(f)]
    if not videos:
        raise FileNotFoundError(
            f"--input {pattern!r} matches no video files ({', '.join(extensions)}); "
            "pass a glob such as 'corpus/**/*.mp4', a Kinetics CSV with --video_root, or a manifest"
        )
    base = _glob_base(pattern) if not os.path.isdir(pattern) else pattern.rstrip("/") + "/"
    clips = [clip_from_video_path(f, base) for f in videos]
    return _dedupe(clips, [], f"{len(videos)} videos matching {pattern}")


def _is_sidecar(path: str) -> bool:
    name = path.lower()
    return name.endswith((COCO_SUFFIX, ".npz", ".csv", ".jsonl")) or f"{OPENPOSE_SUFFIX}/" in name.replace("\\", "/")


def _dedupe(clips: list[ClipRef], rejected: list[PerceptionResult], description: str) -> InputListing:
    """Sort by clip id; later duplicates of an id become bad_input_row rejections."""
    seen: dict[str, ClipRef] = {}
    out_rejected = list(rejected)
    for clip in clips:
        if clip.clip_id in seen:
            dup_id = f"{clip.clip_id}~dup-{stable_hash(clip.uri + repr(clip.extra))[:8]}"
            out_rejected.append(
                PerceptionResult(
                    clip=clip.replace(clip_id=dup_id),
                    reject_reason=RejectReason.BAD_INPUT_ROW,
                    message=f"duplicate clip id {clip.clip_id} ({clip.uri}; first seen as {seen[clip.clip_id].uri}); "
                    "remove the duplicate row or file",
                )
            )
            continue
        seen[clip.clip_id] = clip
    ordered = tuple(sorted(seen.values(), key=lambda c: c.clip_id))
    return InputListing(ordered, tuple(sorted(out_rejected, key=lambda r: r.clip.clip_id)), description)


def _bad_row(source: str, line: int, text: str, message: str) -> PerceptionResult:
    clip_id = f"bad-row-{_stem(source)}-L{line}-{stable_hash(source + text)[:6]}"
    return PerceptionResult(
        clip=ClipRef(clip_id=clip_id, uri=source, extra={"line": str(line), "row": text[:500]}),
        reject_reason=RejectReason.BAD_INPUT_ROW,
        message=f"{source}:{line}: {message}",
    )


def _video_index(root: str, list_files: ListFiles, extensions: tuple[str, ...]) -> dict[str, str]:
    """Map file stem -> path for every video under ``root`` (one listing, not one check per row)."""
    pattern = _join(root, "**", "*") if not _is_url(root) else root.rstrip("/") + "/**"
    index: dict[str, str] = {}
    for path in list_files(pattern):
        if path.lower().endswith(extensions):
            index.setdefault(_stem(path), path)
    return index


def clips_from_kinetics_csv(
    csv_path: str,
    video_root: str | None = None,
    list_files: ListFiles = local_list_files,
    read_text: ReadText = local_read_text,
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
) -> InputListing:
    """Clips of a Kinetics CSV (``label,youtube_id,time_start,time_end,split``, extra columns kept).

    A row's video is looked up under ``video_root`` by the file stem
    ``<youtube_id>_<start:06d>_<end:06d>`` (a cut clip: the whole file is used) and then
    ``<youtube_id>`` (a full video: the CSV's time range is used). A row whose video is
    not found still becomes a clip, with the expected path, so the perception stage records
    it as ``missing_file``.
    """
    try:
        text = read_text(csv_path)
    except (FileNotFoundError, OSError) as exc:
        raise FileNotFoundError(f"Kinetics CSV {csv_path!r} cannot be read ({exc}); check --input") from exc
    root = video_root or (os.path.dirname(csv_path) if not _is_url(csv_path) else csv_path.rsplit("/", 1)[0])
    index = _video_index(root, list_files, extensions)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise FileNotFoundError(f"Kinetics CSV {csv_path!r} is empty; expected a header {','.join(KINETICS_COLUMNS)}") from None
    missing = [c for c in ("youtube_id", "time_start", "time_end") if c not in header]
    if missing:
        raise ValueError(
            f"Kinetics CSV {csv_path!r} lacks the columns {missing}; expected a header like {','.join(KINETICS_COLUMNS)}"
        )
    clips: list[ClipRef] = []
    rejected: list[PerceptionResult] = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        raw = ",".join(row)
        if len(row) != len(header):
            rejected.append(_bad_row(csv_path, line_no, raw, f"expected {len(header)} columns ({','.join(header)}), got {len(row)}"))
            continue
        record = {h: cell.strip() for h, cell in zip(header, row)}
        youtube_id = record["youtube_id"]
        if not youtube_id or not re.fullmatch(r"[A-Za-z0-9_-]+", youtube_id):
            rejected.append(_bad_row(csv_path, line_no, raw, f"bad youtube_id {youtube_id!r}"))
            continue
        try:
            start, end = float(record["time_start"]), float(record["time_end"])
        except ValueError:
            rejected.append(_bad_row(csv_path, line_no, raw, f"time_start/time_end not numbers: {record['time_start']!r}, {record['time_end']!r}"))
            continue
        if not (start >= 0 and end > start) or end - start > 3600:
            rejected.append(_bad_row(csv_path, line_no, raw, f"bad time range [{start}, {end}] s"))
            continue
        label, split = record.get("label", ""), record.get("split", "")
        clip_id = clip_id_for(youtube_id, start, end)
        extra = {k: v for k, v in record.items() if k not in KINETICS_COLUMNS}
        if clip_id in index:
            clip = ClipRef(clip_id, index[clip_id], label, split, None, None, extra=extra)
        elif youtube_id in index:
            clip = ClipRef(clip_id, index[youtube_id], label, split, start, end, extra=extra)
        else:
            expected = _join(root, *(p for p in (split, label) if p), f"{clip_id}.mp4")
            clip = ClipRef(clip_id, expected, label, split, None, None, extra=extra)
        clips.append(clip)
    return _dedupe(clips, rejected, f"{len(clips) + len(rejected)} rows of {csv_path} (videos under {root})")


def clips_from_manifest(manifest_path: str, read_text: ReadText = local_read_text) -> InputListing:
    """Clips of a JSON-lines manifest, one object per line.

    Keys: ``uri`` (required; relative paths are relative to the manifest), ``clip_id``,
    ``youtube_id``, ``label``, ``split``, ``time_start``, ``time_end``, ``keypoints_uri``;
    other string-valued keys go to ``ClipRef.extra``. Without ``clip_id`` the id comes from
    ``youtube_id`` + time range, or from the file name as for a glob.
    """
    try:
        text = read_text(manifest_path)
    except (FileNotFoundError, OSError) as exc:
        raise FileNotFoundError(f"manifest {manifest_path!r} cannot be read ({exc}); check --input") from exc
    base = os.path.dirname(manifest_path) if not _is_url(manifest_path) else manifest_path.rsplit("/", 1)[0]
    known = {"uri", "clip_id", "youtube_id", "label", "split", "time_start", "time_end", "keypoints_uri"}
    clips: list[ClipRef] = []
    rejected: list[PerceptionResult] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            uri = record.get("uri")
            if not isinstance(uri, str) or not uri:
                raise ValueError("missing 'uri'")
            if not _is_url(uri) and not os.path.isabs(uri):
                uri = _join(base, uri)
            start = record.get("time_start")
            end = record.get("time_end")
            start = None if start is None else float(start)
            end = None if end is None else float(end)
            if start is not None and (start < 0 or (end is not None and end <= start)):
                raise ValueError(f"bad time range [{start}, {end}]")
            clip_id = record.get("clip_id")
            if clip_id is None and record.get("youtube_id") and start is not None and end is not None:
                clip_id = clip_id_for(str(record["youtube_id"]), start, end)
            base_clip = clip_from_video_path(uri, base + "/")
            if not clip_id:
                clip_id = base_clip.clip_id
            if not re.fullmatch(r"[A-Za-z0-9_.~-]+", str(clip_id)):
                raise ValueError(f"clip_id {clip_id!r} has characters other than letters, digits, _ . ~ -")
            keypoints = record.get("keypoints_uri")
            if keypoints and not _is_url(keypoints) and not os.path.isabs(keypoints):
                keypoints = _join(base, keypoints)
            extra = {k: str(v) for k, v in record.items() if k not in known and isinstance(v, (str, int, float))}
            clips.append(
                ClipRef(
                    clip_id=str(clip_id),
                    uri=uri,
                    label=str(record.get("label", base_clip.label)),
                    split=str(record.get("split", base_clip.split)),
                    time_start=start,
                    time_end=end,
                    keypoints_uri=keypoints or None,
                    extra=extra,
                )
            )
        except (ValueError, TypeError) as exc:
            rejected.append(_bad_row(manifest_path, line_no, line, str(exc)))
    return _dedupe(clips, rejected, f"{len(clips) + len(rejected)} lines of {manifest_path}")


def keypoint_candidates(clip: ClipRef, keypoints_root: str | None = None) -> list[str]:
    """Paths where the clip's precomputed keypoints may be, in lookup order.

    Next to the video (``<stem>.coco.json``, ``<stem>_openpose``) when ``keypoints_root``
    is None; otherwise under the root, by ``<split>/<label>/<stem>`` then ``<stem>``.
    The stem is the video's file stem (the clip id for Kinetics clips).
    """
    stem = _stem(clip.uri)
    if keypoints_root is None:
        folder = clip.uri.rsplit("/", 1)[0] if "/" in clip.uri else "."
        return [_join(folder, stem + COCO_SUFFIX), _join(folder, stem + OPENPOSE_SUFFIX)]
    paths = []
    for stem_name in dict.fromkeys((stem, clip.clip_id)):
        if clip.split and clip.label:
            paths += [_join(keypoints_root, clip.split, clip.label, stem_name + COCO_SUFFIX),
                      _join(keypoints_root, clip.split, clip.label, stem_name + OPENPOSE_SUFFIX)]
        paths += [_join(keypoints_root, stem_name + COCO_SUFFIX), _join(keypoints_root, stem_name + OPENPOSE_SUFFIX)]
    return paths


def locate_keypoints(
    clip: ClipRef, keypoints_root: str | None = None, exists: Exists = local_exists
) -> ClipRef | PerceptionResult:
    """Set ``clip.keypoints_uri`` to its precomputed keypoints, or reject the clip.

    A clip that already names its keypoints (a manifest's ``keypoints_uri``) keeps them if
    they exist. Runs on the worker (one existence check per candidate path).

    Returns:
        The clip with ``keypoints_uri`` set, or a PerceptionResult rejected with
        ``missing_keypoints`` listing the paths tried.
    """
    tried = [clip.keypoints_uri] if clip.keypoints_uri else keypoint_candidates(clip, keypoints_root)
    for path in tried:
        if exists(path):
            return clip.replace(keypoints_uri=path)
    where = f"under --keypoints_root {keypoints_root}" if keypoints_root else "next to the video"
    return PerceptionResult(
        clip=clip,
        reject_reason=RejectReason.MISSING_KEYPOINTS,
        message=f"no precomputed keypoints for {clip.uri} {where}; tried {', '.join(tried)}; put a "
        "<stem>.coco.json or <stem>_openpose/ there, or pass --keypoints auto with --pose_model",
    )


def iter_clip_ids(listing: InputListing) -> Iterable[str]:
    yield from (c.clip_id for c in listing.clips)
    yield from (r.clip.clip_id for r in listing.rejected)


def video_rejection(clip: ClipRef, timeout_s: float = 60.0) -> PerceptionResult | None:
    """The clip's rejection when its (local) video is missing or unreadable, else None.

    A cheap ffprobe, used to report a bad video as such (``missing_file``, ``unreadable``,
    ``no_video_stream``) rather than as ``missing_keypoints`` when both are wrong.
    """
    from pipeline.perception.decode import DecodeError, probe_video

    try:
        probe_video(clip.uri, timeout_s=timeout_s)
    except DecodeError as exc:
        return PerceptionResult(clip, reject_reason=exc.reason, message=exc.message)
    return None


def clip_to_json(clip: ClipRef) -> str:
    """One JSON line for a ClipRef (the run's listing file; :func:`clip_from_json` reads it)."""
    return json.dumps(dataclasses.asdict(clip), sort_keys=True)


def clip_from_json(line: str) -> ClipRef:
    return ClipRef(**json.loads(line))

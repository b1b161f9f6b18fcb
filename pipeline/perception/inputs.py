"""Input clips for the job: a glob of videos, a Kinetics CSV plus a video root, or a manifest.

Everything here is plain Python over injected file-system callables (``list_files``,
``read_text``), so the Beam layer can pass Beam's ``FileSystems`` (gs://, s3://...) and tests
can use the local disk. Bad input never raises per row: a bad CSV or manifest line becomes
a :class:`~pipeline.records.PerceptionResult` rejected with ``bad_input_row`` and a message
naming the file and line.

Clip ids are deterministic (:func:`pipeline.records.clip_id_for`): from the Kinetics file
name ``<youtube_id>_<start:06d>_<end:06d>`` or the CSV row (a fractional bound keeps its
fraction); other file names get ``<stem>-<12 hex of the file's canonical path>`` (local:
``os.path.realpath``; remote: the URI), so two different files never share an id, whether
they come from one glob, two globs, a single file or a manifest, and the same file always
gets the same id. ``ClipRef.uri`` is absolute (or the remote URI).

One file is one clip: a second entry for a file already listed (a duplicate row, a symlink,
another spelling of its path) is rejected as ``bad_input_row`` under a unique
``<id>~dup<n>-<hash>`` id (:func:`_dedupe`). A row's label and split must be plain names
(:func:`name_problem`: they pick folders under the roots and name output files), and a
manifest URI must have a scheme the job reads (``scheme_problem``); otherwise the row is
``bad_input_row`` too.

Every entry a glob lists is accounted for (:func:`local_file_problem`): a dangling symlink
or a symlink loop is rejected as ``missing_file``, a directory, FIFO, device or socket with
a video's name as ``not_a_file``, a file or folder that cannot be read (permissions) as
``unreadable``; each gets a log line and a ``rejected/`` row. Hidden entries (names
starting with ``.``), which a glob leaves out, are counted in one warning.

Precomputed keypoints (``docs/conventions.md``): next to the video as ``<stem>.coco.json``
or ``<stem>_openpose/``; under a keypoints root at ``<root>/<split>/<label>/<stem>.coco.json``
then ``<root>/<stem>.coco.json`` (and the ``_openpose`` folders at the same places).
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import glob as globlib
import io
import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pipeline.records import ClipRef, PerceptionResult, RejectReason, clip_id_for, stable_hash

LOGGER = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
KINETICS_STEM = re.compile(r"^(?P<youtube_id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
SPLITS = {"train", "val", "validate", "validation", "test"}
COCO_SUFFIX = ".coco.json"
OPENPOSE_SUFFIX = "_openpose"

MAX_NAME_CHARS = 100
"""Longest label or split a CSV or manifest row may give (the split names output files)."""
REMOTE_SCHEMES = ("gs", "s3", "hdfs", "azfs")
"""URI schemes the job may read through Beam's file systems (each needs its Beam extra,
e.g. ``apache-beam[gcp]`` for ``gs://``); local paths and ``file://`` always work."""

ListFiles = Callable[[str], list[str]]
ReadText = Callable[[str], str]
Exists = Callable[[str], bool]
SchemeProblem = Callable[[str], "str | None"]


def uri_scheme(uri: str) -> str:
    """``gs`` for ``gs://bucket/x``; ``""`` for a local path."""
    return uri.split("://", 1)[0].lower() if _is_url(uri) else ""


def default_scheme_problem(uri: str) -> str | None:
    """Why the job cannot read ``uri`` (its scheme is not one it reads), or None.

    Local paths, ``file://`` and :data:`REMOTE_SCHEMES` pass; the Beam layer passes a stricter
    check (whether the scheme's file system is installed) to :func:`read_inputs`.
    """
    scheme = uri_scheme(uri)
    if scheme in ("", "file") or scheme in REMOTE_SCHEMES:
        return None
    return unsupported_scheme_message(uri)


def unsupported_scheme_message(uri: str, detail: str = "") -> str:
    """The one-line reason for a URI the job cannot read, with what to do."""
    supported = ", ".join(["local paths", "file://"] + [f"{s}://" for s in REMOTE_SCHEMES])
    return (f"{uri}: the job cannot read {uri_scheme(uri)}:// URIs{detail} (it reads {supported}); "
            "download the file and list its local path, or copy it to a supported store")


def name_problem(field_name: str, value: str) -> str | None:
    """Why a row's ``label`` or ``split`` cannot be used, or None.

    Labels and splits are plain names: they choose folders under ``--video_root`` and
    ``--keypoints_root`` and the split names output files, so a path separator, ``.``,
    ``..``, a control character or more than :data:`MAX_NAME_CHARS` characters is refused.
    """
    if len(value) > MAX_NAME_CHARS:
        return (f"{field_name} {value[:40]!r}... is {len(value)} characters long, more than {MAX_NAME_CHARS}; "
                f"shorten the {field_name} (it names folders and output files)")
    if "/" in value or "\\" in value or value.strip() in (".", ".."):
        return (f"{field_name} {value!r} is a path, not a name (it would leave the video and keypoint roots); "
                f"give a plain {field_name} without '/', '\\' or '..'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return f"{field_name} {value!r} holds control characters; give a plain {field_name}"
    return None


def _inside(root: str, path: str) -> bool:
    """Whether a local ``path`` lies under ``root`` once ``..`` is resolved (lexically)."""
    if _is_url(root) or _is_url(path):
        return True
    root = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([root, os.path.normpath(os.path.abspath(path))]) == root


def local_list_files(pattern: str) -> list[str]:
    """Files matching a local glob (``**`` recurses); a directory lists every file under it."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*")
    return sorted(p for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p))


def local_read_text(path: str) -> str:
    """A local text file; a UTF-8 byte-order mark is dropped (``utf-8-sig``)."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        return handle.read()


def local_file_problem(path: str) -> tuple[str, str] | None:
    """Why a local path is not a readable regular file: ``(reason, message)``, or None.

    Reasons: ``missing_file`` (no such path, dangling symlink, symlink loop),
    ``not_a_file`` (a directory, FIFO, character/block device or socket), ``unreadable``
    (permission denied on the file or a folder above it). Remote URIs are not checked (None).
    """
    if _is_url(path) and not path.startswith("file://"):
        return None
    path = path.removeprefix("file://")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return RejectReason.MISSING_FILE, (
                f"{path}: dangling symlink to {os.readlink(path)!r}; fix the link or remove it from the input")
        return RejectReason.MISSING_FILE, f"{path}: no such file; check the path or remove it from the input"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return RejectReason.MISSING_FILE, f"{path}: symlink loop; fix the link or remove it from the input"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return RejectReason.UNREADABLE, (
                f"{path}: permission denied on a folder above the file ({exc.strerror}); fix the permissions")
        return RejectReason.UNREADABLE, f"{path}: cannot stat ({exc.strerror or exc}); check the file system"
    mode = info.st_mode
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    for test, kind in kinds:
        if test(mode):
            return RejectReason.NOT_A_FILE, (
                f"{path}: is {kind}, not a video file; remove it from the input or give a regular file")
    if not stat.S_ISREG(mode):
        return RejectReason.NOT_A_FILE, f"{path}: not a regular file (mode {oct(mode)}); give a regular video file"
    if not os.access(path, os.R_OK):
        return RejectReason.UNREADABLE, (
            f"{path}: permission denied (mode {oct(stat.S_IMODE(mode))}); make it readable (chmod +r) or remove it")
    return None


def local_glob_entries(pattern: str) -> tuple[list[str], list[str]]:
    """Every entry a local glob matches (directories, FIFOs, dangling links included), and
    the folders under its base that could not be listed (permission errors).

    A directory pattern lists everything under it (``<dir>/**/*``).
    """
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*")
    base = _glob_base(pattern) or "."
    unlistable: list[str] = []
    if "**" in pattern:
        if os.path.isdir(base):
            for _ in os.walk(base, onerror=lambda exc: unlistable.append(exc.filename)):
                pass
    else:  # the folders the last path component is matched in
        for folder in globlib.glob(os.path.dirname(pattern) or "."):
            if os.path.isdir(folder):
                try:
                    os.scandir(folder).close()
                except OSError:
                    unlistable.append(folder)
    entries = sorted(globlib.glob(pattern, recursive=True))
    return entries, sorted({os.path.abspath(str(u)) for u in unlistable if u})


def absolute_uri(path: str) -> str:
    """A local path made absolute (``file://`` dropped); a remote URI as it is."""
    if _is_url(path) and not path.startswith("file://"):
        return path
    return os.path.abspath(path.removeprefix("file://"))


def canonical_uri(path: str) -> str:
    """What a clip id hashes: the resolved absolute path (symlinks followed), or the URI."""
    if _is_url(path) and not path.startswith("file://"):
        return path
    return os.path.realpath(path.removeprefix("file://"))


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
    scheme_problem: SchemeProblem = default_scheme_problem,
) -> InputListing:
    """Read the run's clips from a glob, a Kinetics CSV or a manifest.

    Args:
        scheme_problem: why a manifest's URI cannot be read (None when it can); such a row
            is rejected as ``bad_input_row``, never retried.

    Raises:
        FileNotFoundError: the CSV/manifest does not exist or the glob matches no video
            (a whole-run error, reported before the job starts).
        ValueError: ``--input`` or ``--video_root`` has a scheme the job cannot read.
    """
    for flag, value in (("--input", spec.input), ("--video_root", spec.video_root)):
        problem = scheme_problem(value) if value and _is_url(value) else None
        if problem:
            raise ValueError(f"{flag} {problem}")
    kind = spec.resolved_format()
    if kind == "glob":
        listing = clips_from_glob(spec.input, list_files, spec.extensions)
    elif kind == "csv":
        listing = clips_from_kinetics_csv(spec.input, spec.video_root, list_files, read_text, spec.extensions)
    else:
        listing = clips_from_manifest(spec.input, read_text, scheme_problem)
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
        path: the video's path or URL (made absolute: ``ClipRef.uri``).
        base: the folder the run's glob starts at (only decides whether the parent folder
            is a label). Ids of non-Kinetics names hash the file's canonical path
            (:func:`canonical_uri`), so different files never share an id.
    """
    canonical = canonical_uri(path)
    path = absolute_uri(path)
    base = absolute_uri(base).rstrip("/") + "/" if base else ""
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
        clip_id = f"{safe}-{stable_hash(canonical)}"
    return ClipRef(clip_id=clip_id, uri=path, label=label, split=split)


def clips_from_glob(pattern: str, list_files: ListFiles = local_list_files, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> InputListing:
    """Every video matching ``pattern`` (or under it, for a directory).

    Files that are not videos by extension are left out when the pattern is a folder or
    ends in a wildcard such as ``*``; a pattern that names them explicitly (``*.txt``) keeps
    them, so the perception stage rejects them with a reason.

    A local pattern is listed here (``list_files`` serves remote ones): every matching
    entry that is not a readable regular file, and every folder under the pattern that
    cannot be listed, becomes a rejection (:func:`local_file_problem`) with a log line.
    """
    ext = os.path.splitext(pattern.replace("\\", "/").rsplit("/", 1)[-1])[1].lower()
    keep_all = bool(ext) and not any(ch in ext for ch in "*?[")
    rejected: list[PerceptionResult] = []
    if _is_url(pattern):
        files = list_files(pattern)
    else:
        files, unlistable = local_glob_entries(pattern)
        for folder in unlistable:
            message = (f"{folder}: cannot list the folder (permission denied); videos in it are not processed; "
                       "fix its permissions")
            LOGGER.warning("input: %s", message)
            rejected.append(PerceptionResult(
                clip=ClipRef(clip_id=f"unlistable-{_safe_name(folder)}-{stable_hash(folder)}", uri=folder),
                reject_reason=RejectReason.UNREADABLE, message=message))
    videos = [f for f in files if keep_all or f.lower().endswith(extensions)]
    videos = [f for f in videos if not _is_sidecar(f)]
    if not _is_url(pattern):
        _log_hidden_entries(pattern, set(files), extensions if not keep_all else ("",))
    if not videos and not rejected:
        raise FileNotFoundError(
            f"--input {pattern!r} matches no video files ({', '.join(extensions)}); "
            "pass a glob such as 'corpus/**/*.mp4', a Kinetics CSV with --video_root, or a manifest"
        )
    base = _glob_base(pattern) if not os.path.isdir(pattern) else pattern.rstrip("/") + "/"
    clips = []
    for path in videos:
        clip = clip_from_video_path(path, base)
        problem = None if _is_url(path) else local_file_problem(path)
        if problem is None:
            clips.append(clip)
            continue
        reason, message = problem
        LOGGER.warning("input: %s rejected as %s: %s", clip.clip_id, reason, message)
        rejected.append(PerceptionResult(clip=clip, reject_reason=reason, message=message))
    return _dedupe(clips, rejected, f"{len(videos)} videos matching {pattern}"
                   + (f" ({len(rejected)} not readable video files)" if rejected else ""))


def hidden_glob_entries(pattern: str, listed: set[str], extensions: tuple[str, ...]) -> list[str]:
    """Video entries a local glob leaves out because they or a folder above them are hidden
    (names starting with ``.``), in sorted order."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*")
    everything = globlib.glob(pattern, recursive=True, include_hidden=True)
    return sorted(p for p in everything if p not in listed and p.lower().endswith(extensions) and not _is_sidecar(p))


def _log_hidden_entries(pattern: str, listed: set[str], extensions: tuple[str, ...]) -> None:
    """One warning naming how many hidden video entries the glob left out, and how to add them."""
    hidden = hidden_glob_entries(pattern, listed, extensions)
    if hidden:
        LOGGER.warning(
            "input: %d hidden video file(s) or file(s) in hidden folders (names starting with '.') left out of %s, "
            "e.g. %s; to process them, rename them without the leading '.' or list them in a JSON-lines manifest",
            len(hidden), pattern, hidden[0])


def _safe_name(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", PurePosixPath(path.replace("\\", "/")).name)[:80] or "folder"


def _is_sidecar(path: str) -> bool:
    name = path.lower()
    return name.endswith((COCO_SUFFIX, ".npz", ".csv", ".jsonl")) or f"{OPENPOSE_SUFFIX}/" in name.replace("\\", "/")


def _dedupe(clips: list[ClipRef], rejected: list[PerceptionResult], description: str) -> InputListing:
    """One clip per id and per file; the extras become ``bad_input_row`` rejections.

    Entries are taken in listing order (input order: deterministic across reruns). A later
    entry with a clip id already taken, or naming the same file and time range as an earlier
    one under another id (a symlink or a second spelling of a path: the file keeps its
    first id), is rejected with a message naming both. Extras get ids
    ``<id>~dup<n>-<hash>`` (n counts the extras of one id), so every id stays unique however
    many copies a manifest holds. A rejection whose id another entry already has gets the
    same kind of suffix.
    """
    seen: dict[str, ClipRef] = {}
    by_file: dict[tuple[str, float | None, float | None], ClipRef] = {}
    extras: dict[str, int] = {}
    out_rejected = []
    taken = {c.clip_id for c in clips}

    def extra_id(clip_id: str, salt: str) -> str:
        extras[clip_id] = extras.get(clip_id, 0) + 1
        return f"{clip_id}~dup{extras[clip_id]}-{stable_hash(salt)[:8]}"

    for result in rejected:
        if result.clip.clip_id in taken:
            clip = result.clip
            result = dataclasses.replace(result, clip=clip.replace(clip_id=extra_id(clip.clip_id, clip.uri + result.message)))
        taken.add(result.clip.clip_id)
        out_rejected.append(result)
    for clip in clips:
        file_key = (canonical_uri(clip.uri), clip.time_start, clip.time_end)
        first = seen.get(clip.clip_id)
        same_file = by_file.get(file_key)
        if first is None and same_file is not None:
            first = same_file
            why = (f"{clip.uri} is the same file as {same_file.uri} (a symlink or another spelling of its path), "
                   f"already listed as clip {same_file.clip_id}; a file keeps one id: remove the duplicate entry")
        elif first is not None:
            why = (f"duplicate clip id {clip.clip_id} ({clip.uri}; first seen as {first.uri}); "
                   "remove the duplicate row or file")
        if first is not None:
            out_rejected.append(PerceptionResult(
                clip=clip.replace(clip_id=extra_id(clip.clip_id, clip.uri + repr(clip.extra))),
                reject_reason=RejectReason.BAD_INPUT_ROW, message=why))
            continue
        seen[clip.clip_id] = clip
        by_file[file_key] = clip
    ordered = tuple(sorted(seen.values(), key=lambda c: c.clip_id))
    return InputListing(ordered, tuple(sorted(out_rejected, key=lambda r: r.clip.clip_id)), description)


def _bad_row(source: str, line: int, text: str, message: str) -> PerceptionResult:
    """A ``bad_input_row`` rejection naming the file and line; a message that does not say
    what to do (it has no ``;``) gets "fix or remove the line"."""
    clip_id = f"bad-row-{_stem(source)}-L{line}-{stable_hash(source + text)[:6]}"
    fix = "" if ";" in message else "; fix or remove the line"
    return PerceptionResult(
        clip=ClipRef(clip_id=clip_id, uri=source, extra={"line": str(line), "row": text[:500]}),
        reject_reason=RejectReason.BAD_INPUT_ROW,
        message=f"{source}:{line}: {message}{fix}",
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
    root = absolute_uri(root or ".")
    index = _video_index(root, list_files, extensions)
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))  # utf-8-sig, whatever read it
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
        if not (math.isfinite(start) and math.isfinite(end)):
            rejected.append(_bad_row(csv_path, line_no, raw, f"time_start/time_end must be finite numbers, got {start}, {end}"))
            continue
        if not (start >= 0 and end > start) or end - start > 3600:
            rejected.append(_bad_row(csv_path, line_no, raw, f"bad time range [{start}, {end}] s"))
            continue
        label, split = record.get("label", ""), record.get("split", "")
        problem = name_problem("label", label) or name_problem("split", split)
        if problem:
            rejected.append(_bad_row(csv_path, line_no, raw, problem))
            continue
        clip_id = clip_id_for(youtube_id, start, end)
        extra = {k: v for k, v in record.items() if k not in KINETICS_COLUMNS}
        if clip_id in index:
            clip = ClipRef(clip_id, index[clip_id], label, split, None, None, extra=extra)
        elif youtube_id in index:
            clip = ClipRef(clip_id, index[youtube_id], label, split, start, end, extra=extra)
        else:
            expected = _join(root, *(p for p in (split, label) if p), f"{clip_id}.mp4")
            if not _inside(root, expected):  # name_problem refuses what could get here
                rejected.append(_bad_row(csv_path, line_no, raw, f"{expected} lies outside --video_root {root}; fix the row"))
                continue
            clip = ClipRef(clip_id, expected, label, split, None, None, extra=extra)
        clips.append(clip)
    return _dedupe(clips, rejected, f"{len(clips) + len(rejected)} rows of {csv_path} (videos under {root})")


def clips_from_manifest(
    manifest_path: str, read_text: ReadText = local_read_text, scheme_problem: SchemeProblem = default_scheme_problem
) -> InputListing:
    """Clips of a JSON-lines manifest, one object per line.

    Keys: ``uri`` (required; relative paths are relative to the manifest), ``clip_id``,
    ``youtube_id``, ``label``, ``split``, ``time_start``, ``time_end``, ``keypoints_uri``;
    other string-valued keys go to ``ClipRef.extra``. Without ``clip_id`` the id comes from
    ``youtube_id`` + time range, or from the file name as for a glob. A line whose URI has
    a scheme the job cannot read (``scheme_problem``), or whose label or split is not a plain
    name (:func:`name_problem`), is rejected as ``bad_input_row``.
    """
    try:
        text = read_text(manifest_path)
    except (FileNotFoundError, OSError) as exc:
        raise FileNotFoundError(f"manifest {manifest_path!r} cannot be read ({exc}); check --input") from exc
    base = os.path.dirname(manifest_path) if not _is_url(manifest_path) else manifest_path.rsplit("/", 1)[0]
    base = absolute_uri(base or ".")
    text = text.removeprefix("\ufeff")
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
            for value in (uri, record.get("keypoints_uri")):
                problem = scheme_problem(value) if isinstance(value, str) and _is_url(value) else None
                if problem:
                    raise ValueError(problem)
            for name in ("label", "split"):
                problem = name_problem(name, str(record.get(name, "")))
                if problem:
                    raise ValueError(problem)
            if not _is_url(uri) and not os.path.isabs(uri):
                uri = _join(base, uri)
            uri = absolute_uri(uri)
            start = _seconds_field(record, "time_start")
            end = _seconds_field(record, "time_end")
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
        except RecursionError:
            rejected.append(_bad_row(manifest_path, line_no, line, "JSON nested too deeply: give one flat object per line"))
        except (ValueError, TypeError) as exc:
            rejected.append(_bad_row(manifest_path, line_no, line, str(exc)))
    return _dedupe(clips, rejected, f"{len(clips) + len(rejected)} lines of {manifest_path}")


def _seconds_field(record: dict, key: str) -> float | None:
    """A manifest time in seconds: None, or a finite number (bool, NaN and Inf refused)."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key} must be a number of seconds, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{key} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number of seconds, got {value!r}")
    return number


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


def video_rejection(clip: ClipRef, timeout_s: float = 60.0) -> PerceptionResult | None:
    """The clip's rejection when its (local) video is missing or unreadable, else None.

    A cheap ffprobe, used to report a bad video as such (``missing_file``, ``unreadable``,
    ``no_video_stream``) rather than as ``missing_keypoints`` when both are wrong.
    """
    from pipeline.perception.decode import DecodeError, probe_video

    problem = local_file_problem(clip.uri)
    if problem is not None:
        return PerceptionResult(clip, reject_reason=problem[0], message=problem[1])
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

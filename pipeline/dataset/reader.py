"""PyTorch reader of the ``frames/`` dataset, built on ``pyarrow.dataset``.

:class:`FramesDataset` is an ``IterableDataset`` that yields one sample per frame (frame
mode) or one window of ``T`` consecutive frames of a track (sequence mode). Samples are
dicts of tensors named like the columns of ``docs/schema.md`` (``keypoints_2d`` (17, 3)
float32, ``pose`` (72,) float32, ...; in sequence mode every tensor gets a leading ``T``
axis), text columns as ``str``, and, when the shards hold ``crop_jpeg``, the decoded person
crop as ``crop`` (3, S, S) uint8 with ``crop_valid`` (False where the frame has no crop:
the crop is then zeros).

Sharding. The unit of work is a Parquet row group (``unit`` = file + row-group index,
sorted by file name then index). Units are dealt to ``world_size x num_workers`` readers,
each unit to exactly one reader, by list scheduling on row counts (each unit, in order,
goes to the least-loaded reader), so across ranks (``torch.distributed`` or explicit
``rank``/``world_size``) and DataLoader workers nothing is duplicated and nothing is
missing. With ``shuffle=True`` the unit order (hence the deal) is permuted per epoch
(``set_epoch``) with a seeded generator, identically on every rank, and rows are shuffled
within each unit. In sequence mode a track belongs to the unit holding its first row and
that reader also reads the track's continuation from the following row groups, so no
window is cut by a row-group boundary or produced twice.

Selection. Fits are committed before the selection is known; the selection over the whole
output is the small table ``selection/tracks.parquet`` (see
:mod:`pipeline.dataset.selection.table`). When it exists the reader joins it: a frame's
``track_selected`` is the table's verdict, ``selected_only`` keeps the selected tracks, and
rows of a clip's extra copy (a clip committed twice by a retried bundle) are dropped. The
selection also writes its verdicts into the stored flags
(:mod:`pipeline.dataset.selection.publish`), so both agree. Without it (a run interrupted
before its end) the stored flags are False and nothing is selected yet: read with
``FrameFilter(selected_only=False)`` or run ``vid2mesh select OUTPUT``.

Filesystems. Paths go through :mod:`pipeline.dataset.fs`: local folders, ``gs://`` and any
pyarrow or fsspec filesystem (or pass ``filesystem=``).

Filters (:class:`FrameFilter`): selected tracks only, inlier frames only, labels, splits,
an absolute E_norm bound, and an E_norm quantile computed over the tracks of the dataset
that pass the other track-level filters (``e_norm_threshold`` holds the bound it gives).
Track-level filters are pushed down to the Parquet scan (row-group statistics skip
whole groups); in sequence mode ``inliers_only`` cuts tracks into runs of consecutive
inlier frames instead of dropping rows, so a window is always ``T`` consecutive decoded
frames.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.dataset import fs as vfs
from pipeline.dataset import schema
from pipeline.dataset.selection.table import SELECTION, TRACKS_FILE
from pipeline.perception.crops import CROP_COLUMN, decode_crop

LOGGER = logging.getLogger(__name__)

__all__ = [
    "FrameFilter",
    "FramesDataset",
    "SequenceConfig",
    "Unit",
    "assign_units",
    "column_to_numpy",
    "frames_files",
    "frames_schema",
    "locate_frames",
    "read_frames",
    "read_clips",
    "read_selection",
    "read_tracks",
]

KEY_COLUMNS = ("clip_id", "track_id")
TEXT_TYPES = (pa.string(), pa.large_string())


@dataclass(frozen=True)
class FrameFilter:
    """Which rows of ``frames/`` to read.

    Attributes:
        selected_only: only frames of tracks that passed selection (``track_selected``);
            matters for datasets written with ``--frames all``.
        inliers_only: only inlier frames (``inlier``: reprojection error below tau_R).
        detected_only: only frames where the tracker kept a detection (``has_detection``).
        clip_ids: keep these clips only (None: all).
        labels: keep these action labels only (None: all).
        splits: keep these source splits only (None: all).
        max_e_norm: keep tracks with ``e_norm`` <= this bound (energy per frame by default; tracks.e_norm).
        e_norm_quantile: keep tracks whose ``e_norm`` is at most this quantile (in (0, 1])
            of the ``e_norm`` of the dataset's tracks that pass the other track-level
            filters (0.5 = the better half of the tracks).
        max_pred_err_mm: keep frames whose predicted 3D joint error ``pred_err_mm`` (the
            fit's own uncertainty, mm) is at most this bound; undetermined frames (inf)
            are always dropped by it (None: no bound).
        max_frame_score_mm: keep frames whose frame score ``frame_score_mm`` (the frame form
            of the selection score, mm: the frame's and its track's predicted error and the
            frame's fit-to-init disagreement; it ranks true per-frame error better than
            ``pred_err_mm``) is at most this bound; undetermined frames (inf) are always
            dropped by it. Needs schema 1.4.0 or later (None: no bound).
    """

    selected_only: bool = True
    inliers_only: bool = False
    detected_only: bool = False
    clip_ids: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    splits: tuple[str, ...] | None = None
    max_e_norm: float | None = None
    e_norm_quantile: float | None = None
    max_pred_err_mm: float | None = None
    max_frame_score_mm: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_pred_err_mm", "max_frame_score_mm"):
            bound = getattr(self, name)
            if bound is not None and not bound > 0:
                raise ValueError(f"FrameFilter.{name}={bound}: use a bound > 0 in millimetres")
        if self.e_norm_quantile is not None and not 0 < self.e_norm_quantile <= 1:
            raise ValueError(f"FrameFilter.e_norm_quantile={self.e_norm_quantile}: use a quantile in (0, 1]")
        for name in ("clip_ids", "labels", "splits"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"FrameFilter.{name} must be a tuple of strings, got the string {value!r}")
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    def track_expression(self, e_norm_bound: float | None = None, selection: "SelectionJoin | None" = None) -> ds.Expression | None:
        """Filter on track-level columns (constant within a track); with a ``selection``
        table, ``selected_only`` pushes down its selected clips (the exact track filter is
        :meth:`SelectionJoin.apply`)."""
        terms = []
        if self.selected_only and selection is None:
            terms.append(pc.field("track_selected") == True)  # noqa: E712 (arrow expression)
        elif self.selected_only:
            terms.append(pc.field("clip_id").isin(selection.selected_clips))
        if self.clip_ids is not None:
            terms.append(pc.field("clip_id").isin(list(self.clip_ids)))
        if self.labels is not None:
            terms.append(pc.field("label").isin(list(self.labels)))
        if self.splits is not None:
            terms.append(pc.field("split").isin(list(self.splits)))
        bounds = [b for b in (self.max_e_norm, e_norm_bound) if b is not None]
        if bounds:
            terms.append(pc.field("e_norm") <= min(bounds))
        return _all_of(terms)

    def frame_expression(self) -> ds.Expression | None:
        """Filter on per-frame columns."""
        terms = []
        if self.inliers_only:
            terms.append(pc.field("inlier") == True)  # noqa: E712
        if self.detected_only:
            terms.append(pc.field("has_detection") == True)  # noqa: E712
        if self.max_pred_err_mm is not None:
            terms.append(pc.field("pred_err_mm") <= float(self.max_pred_err_mm))
        if self.max_frame_score_mm is not None:
            terms.append(pc.field("frame_score_mm") <= float(self.max_frame_score_mm))
        return _all_of(terms)


@dataclass(frozen=True)
class SequenceConfig:
    """Track-level sequence mode: windows of ``length`` consecutive frames.

    Attributes:
        length: frames per window (T).
        stride: frames between the starts of consecutive windows of a track.
    """

    length: int
    stride: int = 1

    def __post_init__(self) -> None:
        if self.length < 1 or self.stride < 1:
            raise ValueError(f"SequenceConfig(length={self.length}, stride={self.stride}): both must be >= 1")


@dataclass(frozen=True)
class Unit:
    """One row group of one Parquet file: the unit of sharding.

    Attributes:
        path: file path.
        row_group: index of the row group in the file.
        num_rows: rows in the row group.
        num_row_groups: row groups in the file.
    """

    path: str
    row_group: int
    num_rows: int
    num_row_groups: int


def _all_of(terms: list[ds.Expression]) -> ds.Expression | None:
    if not terms:
        return None
    out = terms[0]
    for term in terms[1:]:
        out = out & term
    return out


def _and(a: ds.Expression | None, b: ds.Expression | None) -> ds.Expression | None:
    return b if a is None else a if b is None else a & b


_SEP = "\x1f"


class SelectionJoin:
    """``selection/tracks.parquet`` of an output, joined onto rows of ``frames/``/``tracks/``.

    Args:
        table: the selection table (clip_id, track_id, shard, selected, ...).
    """

    def __init__(self, table: pa.Table):
        self.table = table
        shard, clip = table.column("shard"), table.column("clip_id")
        keys = pc.binary_join_element_wise(shard, clip, pc.cast(table.column("track_id"), pa.string()), _SEP)
        selected = table.column("selected").to_numpy(zero_copy_only=False).astype(bool)
        self.selected_keys = pc.filter(keys, pa.array(selected)).combine_chunks() if len(keys) else pa.array([], pa.string())
        self.owner_keys = pc.unique(pc.binary_join_element_wise(shard, clip, _SEP).combine_chunks()) if len(keys) else pa.array([], pa.string())
        self.clips = pc.unique(clip.combine_chunks()) if len(keys) else pa.array([], pa.string())
        self.selected_clips = pc.unique(pc.filter(clip, pa.array(selected)).combine_chunks()).to_pylist() if len(keys) else []

    @classmethod
    def load(cls, filesystem, output: str) -> "SelectionJoin | None":
        path = vfs.join(filesystem, output, SELECTION, TRACKS_FILE)
        if not vfs.is_file(filesystem, path):
            return None
        with filesystem.open_input_file(path) as handle:
            return cls(pq.read_table(handle))

    def apply(self, table: pa.Table, shards: pa.Array | pa.ChunkedArray | str, selected_only: bool) -> pa.Table:
        """Drop copies of clips another shard owns (and unselected tracks when
        ``selected_only``); set ``track_selected`` (or ``selected``) to the table's verdict.
        ``table`` must have ``clip_id`` and ``track_id``; ``shards`` is the shard name of
        each row (or one name for all)."""
        if table.num_rows == 0:
            return table
        clip, track = table.column("clip_id"), pc.cast(table.column("track_id"), pa.string())
        if isinstance(shards, str):
            shards = pa.array([shards] * table.num_rows, pa.string())
        owner = pc.binary_join_element_wise(shards, clip, _SEP)
        known = pc.is_in(clip, value_set=self.clips)
        keep = pc.or_(pc.invert(known), pc.is_in(owner, value_set=self.owner_keys))
        selected = pc.is_in(pc.binary_join_element_wise(shards, clip, track, _SEP), value_set=self.selected_keys)
        if selected_only:
            keep = pc.and_(keep, selected)
        for name in ("track_selected", "selected"):
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), table.schema.field(name), selected)
        return table.filter(keep)


def shard_of(path: str) -> str:
    """Shard name of a data file (``.../frames/shard-<digest>.parquet`` -> ``shard-<digest>``)."""
    return os.path.basename(path).split(".")[0]


def _locate(path, filesystem=None) -> tuple[Any, list[str], str | None]:
    """(filesystem, frames files, output folder or None) of a reader path argument."""
    if isinstance(path, (list, tuple)):
        if not path:
            raise FileNotFoundError("no frames files given: pass the output folder of `vid2mesh run`, its frames/ folder or Parquet files")
        fs, _ = vfs.resolve(path[0], filesystem)
        files = sorted(vfs.resolve(p, filesystem)[1] for p in path)
    else:
        fs, inner = vfs.resolve(path, filesystem)
        if vfs.is_file(fs, inner):
            files = [inner]
        else:
            folder = vfs.join(fs, inner, "frames") if vfs.is_dir(fs, vfs.join(fs, inner, "frames")) else inner
            files = vfs.list_files(fs, folder, ".parquet")
    missing = [f for f in files if not vfs.is_file(fs, f)]
    if missing:
        raise FileNotFoundError(f"frames file {missing[0]} does not exist")
    if not files:
        raise FileNotFoundError(
            f"no frames/*.parquet under {path}: pass the output folder of `vid2mesh run`, its frames/ folder or Parquet files"
        )
    parent = os.path.dirname if vfs.is_local(fs) else __import__("posixpath").dirname
    folder = parent(files[0])
    output = parent(folder) if os.path.basename(folder.rstrip("/")) == "frames" else None
    return fs, files, output


def locate_frames(path, filesystem=None) -> tuple[Any, list[str], str | None]:
    """(``pyarrow.fs`` filesystem, frames files inside it, output folder or None) of a
    path argument of the reader (see :func:`frames_files`)."""
    return _locate(path, filesystem)


def frames_files(path: str | os.PathLike | Sequence[str | os.PathLike], filesystem=None) -> list[str]:
    """The Parquet files of a ``frames/`` dataset.

    Args:
        path: a run's output folder (holding ``frames/``), a ``frames/`` folder, one
            ``.parquet`` file, or a list of files; local, a URI (``gs://...``) or a path
            inside ``filesystem``.
        filesystem: a ``pyarrow.fs`` or fsspec filesystem the paths are in (None: from the path).

    Returns:
        Sorted file paths, inside the filesystem (``_common_metadata`` and temporary files
        excluded).

    Raises:
        FileNotFoundError: nothing to read there.
    """
    return _locate(path, filesystem)[1]


def _dataset_schema(files: list[str], filesystem=None) -> pa.Schema:
    """Unified schema of the files (a column missing from a file reads as null); checks
    that they are vid2mesh ``frames`` files of a readable schema version."""
    schemas = []
    for f in files:
        file_schema = pq.read_schema(f, filesystem=filesystem)
        meta = schema.read_metadata(file_schema)
        if meta.get(schema.KEY_DATASET) != "frames":
            raise ValueError(f"{f} is a vid2mesh {meta.get(schema.KEY_DATASET)!r} file, not frames/; pass the frames/ dataset")
        schemas.append(file_schema)
    unified = pa.unify_schemas(schemas)
    return unified.with_metadata(schemas[-1].metadata)


def frames_schema(path: str | os.PathLike | Sequence[str | os.PathLike], filesystem=None) -> pa.Schema:
    """The unified arrow schema (with vid2mesh metadata) of a ``frames/`` dataset."""
    fs, files, _ = _locate(path, filesystem)
    return _dataset_schema(files, fs)


def read_selection(output: str | os.PathLike, filesystem=None) -> pa.Table | None:
    """``selection/tracks.parquet`` of an output folder (None: no selection yet)."""
    fs, inner = vfs.resolve(output, filesystem)
    join = SelectionJoin.load(fs, inner)
    return None if join is None else join.table


def read_clips(output: str | os.PathLike, filesystem=None) -> pa.Table:
    """``selection/clips.parquet``: where every clip of the output ended (kept, rejected
    with a reason, failed), after the selection.

    Raises:
        FileNotFoundError: no selection yet (run ``vid2mesh select OUTPUT``).
    """
    from pipeline.dataset.selection.table import CLIPS_FILE

    fs, inner = vfs.resolve(output, filesystem)
    path = vfs.join(fs, inner, SELECTION, CLIPS_FILE)
    if not vfs.is_file(fs, path):
        raise FileNotFoundError(f"{output} has no {SELECTION}/{CLIPS_FILE}: run `vid2mesh select {output}` first")
    with fs.open_input_file(path) as handle:
        return pq.read_table(handle)


def read_tracks(output: str | os.PathLike, columns: Sequence[str] | None = None, filesystem=None) -> pa.Table:
    """``tracks/`` of an output with the final selection: ``selected``,
    ``selection_reason`` and ``e_norm_threshold`` from ``selection/tracks.parquet`` (the
    committed rows say ``eligible`` until the selection ran), copies of a clip committed
    twice dropped. Without a selection table the committed rows are returned as they are."""
    fs, inner = vfs.resolve(output, filesystem)
    files = vfs.list_files(fs, vfs.join(fs, inner, "tracks"), ".parquet")
    if not files:
        raise FileNotFoundError(f"no tracks/*.parquet under {output}: pass the output folder of `vid2mesh run`")
    wanted = list(columns) if columns else None
    read = None if wanted is None else list(dict.fromkeys([*wanted, "clip_id", "track_id"]))
    data = ds.dataset(files, format="parquet", filesystem=fs)
    table = data.to_table(columns=[*(read or data.schema.names), "__filename"])
    shards = pa.array([shard_of(f) for f in table.column("__filename").to_pylist()], pa.string())
    table = table.drop_columns(["__filename"])
    join = SelectionJoin.load(fs, inner)
    if join is not None:
        table = join.apply(table, shards, selected_only=False)
        verdicts = join.table.select(["clip_id", "track_id", "selection_reason", "e_norm_threshold"])
        for name in ("selection_reason", "e_norm_threshold"):
            if name in table.column_names:
                lookup = {(c, t): v for c, t, v in zip(verdicts.column("clip_id").to_pylist(), verdicts.column("track_id").to_pylist(),
                                                      verdicts.column(name).to_pylist())}
                current = table.column(name).to_pylist()
                values = [lookup.get((c, t), v) for c, t, v in zip(table.column("clip_id").to_pylist(),
                                                                  table.column("track_id").to_pylist(), current)]
                table = table.set_column(table.column_names.index(name), table.schema.field(name),
                                         pa.array(values, table.schema.field(name).type))
    table = table.sort_by([("clip_id", "ascending"), ("track_id", "ascending")])
    return table.select(wanted) if wanted else table


def read_frames(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    columns: Sequence[str] | None = None,
    filter: FrameFilter = FrameFilter(selected_only=False),
    filesystem=None,
) -> pa.Table:
    """The (filtered) ``frames/`` rows as one arrow table, for analysis (not training).

    Args:
        path: as for :func:`frames_files`.
        columns: columns to read (None: all).
        filter: rows to keep (default: every row).
        filesystem: as for :func:`frames_files`.
    """
    fs, files, output = _locate(path, filesystem)
    file_schema = _dataset_schema(files, fs)
    data = ds.dataset(files, format="parquet", schema=file_schema, filesystem=fs)
    join = SelectionJoin.load(fs, output) if output is not None else None
    bound = _quantile_bound(data, filter, join)
    expr = _and(filter.track_expression(bound, join), filter.frame_expression())
    if join is None:
        return data.to_table(columns=list(columns) if columns else None, filter=expr)
    wanted = list(columns) if columns else list(file_schema.names)
    read = list(dict.fromkeys([*wanted, "clip_id", "track_id"]))
    table = data.to_table(columns=[*read, "__filename"], filter=expr)
    shards = pa.array([shard_of(f) for f in table.column("__filename").to_pylist()], pa.string())
    table = join.apply(table.drop_columns(["__filename"]), shards, filter.selected_only)
    return table.select(wanted)


def _quantile_bound(data: ds.Dataset, filter: FrameFilter, join: SelectionJoin | None = None) -> float | None:
    """The E_norm value at ``filter.e_norm_quantile`` over distinct tracks (None: no quantile)."""
    if filter.e_norm_quantile is None:
        return None
    if join is None:
        tracks = data.to_table(columns=["clip_id", "track_id", "e_norm"], filter=filter.track_expression())
    else:
        tracks = data.to_table(columns=["clip_id", "track_id", "e_norm", "__filename"], filter=filter.track_expression(None, join))
        shards = pa.array([shard_of(f) for f in tracks.column("__filename").to_pylist()], pa.string())
        tracks = join.apply(tracks.drop_columns(["__filename"]), shards, filter.selected_only)
    if tracks.num_rows == 0:
        return -math.inf
    per_track = tracks.group_by(["clip_id", "track_id"]).aggregate([("e_norm", "min")])
    values = per_track.column("e_norm_min").to_numpy(zero_copy_only=False)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return -math.inf
    return float(np.quantile(values, filter.e_norm_quantile, method="inverted_cdf"))


def assign_units(units: Sequence[Unit], num_shards: int) -> list[list[int]]:
    """Deal units to shards: each unit, in order, to the shard with the fewest rows so far.

    Args:
        units: the units, in the (possibly permuted) order to deal them.
        num_shards: readers (ranks x DataLoader workers).

    Returns:
        For each shard, the indices into ``units`` it reads, in dealing order; every index
        appears in exactly one shard.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards}: must be >= 1")
    loads = [0] * num_shards
    shards: list[list[int]] = [[] for _ in range(num_shards)]
    for index, unit in enumerate(units):
        target = min(range(num_shards), key=lambda s: (loads[s], s))
        shards[target].append(index)
        loads[target] += unit.num_rows
    return shards


def column_to_numpy(column: pa.ChunkedArray, dtype: pa.DataType) -> np.ndarray | list:
    """A column as an (N, *shape) numpy array, or a list for text/binary columns."""
    if isinstance(dtype, pa.FixedSizeListType):
        shape = []
        inner = dtype
        while isinstance(inner, pa.FixedSizeListType):
            shape.append(inner.list_size)
            inner = inner.value_type
        array = column.combine_chunks()
        flat = array
        for _ in shape:
            flat = flat.flatten()
        values = flat.to_numpy(zero_copy_only=False)
        return values.reshape(len(array), *shape)
    if dtype in TEXT_TYPES or pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return column.to_pylist()
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype):
        return column.to_numpy(zero_copy_only=False)
    return column.to_pylist()


class FramesDataset(IterableDataset):
    """``frames/`` as a PyTorch ``IterableDataset`` (see the module docstring).

    Args:
        path: a run's output folder, its ``frames/`` folder, a file or a list of files.
        filter: which rows to read.
        columns: columns to return (None: every column of the schema); ``crop_jpeg`` is
            returned decoded as ``crop`` / ``crop_valid`` when ``decode_crops``.
        sequence: None for one sample per frame, or windows of consecutive frames.
        rank, world_size: this process's place among data-parallel ranks; None takes
            them from ``torch.distributed`` when initialised, else (0, 1).
        shuffle: permute units per epoch and rows (windows) within a unit.
        seed: seed of the shuffle (same on every rank).
        decode_crops: decode ``crop_jpeg`` into ``crop`` (3, S, S) uint8 tensors.
        filesystem: a ``pyarrow.fs`` or fsspec filesystem holding ``path`` (None: from
            the path: local, ``gs://...``, any fsspec URI).

    Sample keys (frame mode): every requested column; arrays as tensors of the column's
    shape and dtype (float32, float64, int32, bool), scalars as 0-d tensors, text as str.
    Sequence mode: the same with a leading T axis on every tensor; text columns are the
    track's (constant) value.
    """

    def __init__(
        self,
        path: str | os.PathLike | Sequence[str | os.PathLike],
        filter: FrameFilter = FrameFilter(),
        columns: Sequence[str] | None = None,
        sequence: SequenceConfig | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        decode_crops: bool = True,
        filesystem=None,
    ) -> None:
        super().__init__()
        if (rank is None) != (world_size is None):
            raise ValueError("pass both rank and world_size, or neither (then torch.distributed decides)")
        if world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is not in [0, world_size={world_size})")
        self.filesystem, self.files, self.output = _locate(path, filesystem)
        self.schema = _dataset_schema(self.files, self.filesystem)
        self.selection = SelectionJoin.load(self.filesystem, self.output) if self.output is not None else None
        if self.selection is None and filter.selected_only:
            LOGGER.warning("%s has no selection/ table yet (an interrupted run?): nothing is selected; read with "
                           "FrameFilter(selected_only=False) or run `vid2mesh select OUTPUT`", path)
        self.metadata = schema.read_metadata(self.schema)
        self.filter = filter
        self.sequence = sequence
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.decode_crops = decode_crops
        names = self.schema.names
        wanted = list(columns) if columns is not None else [n for n in names]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise ValueError(f"unknown frames columns {unknown}; the dataset has {names}")
        self.columns = wanted
        self.has_crops = CROP_COLUMN in names
        self.units = self._list_units()
        self._data: ds.Dataset | None = None
        if filter.labels is not None:
            self._check_values("label", filter.labels)
        if filter.splits is not None:
            self._check_values("split", filter.splits)
        self.e_norm_threshold = _quantile_bound(self.dataset, filter, self.selection)

    # ----------------------------------------------------------------- set-up helpers

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_data"] = None  # arrow datasets and fragments are rebuilt in each worker process
        state.pop("_fragments", None)
        return state

    @property
    def dataset(self) -> ds.Dataset:
        if self._data is None:
            self._data = ds.dataset(self.files, format="parquet", schema=self.schema, filesystem=self.filesystem)
        return self._data

    def _list_units(self) -> list[Unit]:
        units = []
        for path in self.files:
            with self.filesystem.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
            for rg in range(meta.num_row_groups):
                units.append(Unit(path, rg, meta.row_group(rg).num_rows, meta.num_row_groups))
        return units

    def _check_values(self, column: str, wanted: tuple[str, ...]) -> None:
        present = set(pc.unique(self.dataset.to_table(columns=[column]).column(column).combine_chunks()).to_pylist())
        missing = sorted(set(wanted) - present)
        if missing:
            shown = sorted(present)[:20]
            raise ValueError(f"{column} values {missing} are not in the dataset; it has {shown}{' ...' if len(present) > 20 else ''}")

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for a new epoch (call on every rank before iterating)."""
        self.epoch = int(epoch)

    # ----------------------------------------------------------------- sharding

    def _reader_place(self) -> tuple[int, int]:
        """(this reader's shard id, number of shards) over ranks x DataLoader workers."""
        if self.world_size is not None:
            rank, world = self.rank, self.world_size
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world = 0, 1
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def _ordered_units(self) -> list[Unit]:
        if not self.shuffle:
            return list(self.units)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.units))
        return [self.units[i] for i in order]

    def units_for(self, shard: int, num_shards: int) -> list[Unit]:
        """The units reader ``shard`` of ``num_shards`` reads this epoch."""
        units = self._ordered_units()
        return [units[i] for i in assign_units(units, num_shards)[shard]]

    # ----------------------------------------------------------------- reading

    def _read(self, unit: Unit, row_groups: list[int], columns: list[str], expr: ds.Expression | None,
              select: bool = False) -> pa.Table:
        """Rows of ``row_groups`` of the unit's file; ``select``: join the selection table
        (drop copies, ``selected_only``, ``track_selected`` from the table)."""
        fragment = self._fragment(unit.path)
        if not select or self.selection is None:
            return fragment.subset(row_group_ids=row_groups).to_table(schema=self.schema, columns=columns, filter=expr)
        read = list(dict.fromkeys([*columns, *KEY_COLUMNS]))
        table = fragment.subset(row_group_ids=row_groups).to_table(schema=self.schema, columns=read, filter=expr)
        return self.selection.apply(table, shard_of(unit.path), self.filter.selected_only).select(columns)

    def _fragment(self, path: str) -> ds.ParquetFileFragment:
        fragments = self.__dict__.get("_fragments")
        if fragments is None:
            fragments = {f.path: f for f in self.dataset.get_fragments()}
            self.__dict__["_fragments"] = fragments
        return fragments[path]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard, num_shards = self._reader_place()
        rng = np.random.default_rng([self.seed, self.epoch, shard]) if self.shuffle else None
        for unit in self.units_for(shard, num_shards):
            if self.sequence is None:
                yield from self._frame_samples(unit, rng)
            else:
                yield from self._window_samples(unit, rng)

    def _output_columns(self) -> list[str]:
        return [c for c in self.columns if not (c == CROP_COLUMN and self.decode_crops)]

    def _tensors(self, table: pa.Table) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._output_columns():
            values = column_to_numpy(table.column(name), self.schema.field(name).type)
            if isinstance(values, np.ndarray):
                values = np.ascontiguousarray(values)
                values = torch.from_numpy(values if values.flags.writeable else values.copy())
            out[name] = values
        if self.decode_crops and CROP_COLUMN in self.columns:
            out["crop"], out["crop_valid"] = self._decode_crops(table.column(CROP_COLUMN).to_pylist())
        return out

    def _decode_crops(self, values: list[bytes | None]) -> tuple[torch.Tensor, torch.Tensor]:
        images = [decode_crop(v) if v else None for v in values]
        sizes = {im.shape for im in images if im is not None}
        if len(sizes) > 1:
            raise ValueError(f"crops of different sizes {sorted(sizes)} in one row group; read crops of one run at a time")
        shape = sizes.pop() if sizes else self._crop_shape()
        stack = np.zeros((len(images), *shape), np.uint8)
        for i, im in enumerate(images):
            if im is not None:
                stack[i] = im
        valid = torch.tensor([im is not None for im in images], dtype=torch.bool)
        return torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous(), valid

    def _crop_shape(self) -> tuple[int, int, int]:
        """Shape of the run's crops, for zero crops of a group holding none."""
        if "_crop_shape_cache" not in self.__dict__:
            shape = None
            for unit in self.units:
                table = self._read(unit, [unit.row_group], [CROP_COLUMN], pc.field(CROP_COLUMN).is_valid())
                if table.num_rows:
                    shape = decode_crop(table.column(CROP_COLUMN)[0].as_py()).shape
                    break
            self.__dict__["_crop_shape_cache"] = shape or (1, 1, 3)
        return self.__dict__["_crop_shape_cache"]

    def _frame_samples(self, unit: Unit, rng: np.random.Generator | None) -> Iterator[dict[str, Any]]:
        expr = _and(self.filter.track_expression(self.e_norm_threshold, self.selection), self.filter.frame_expression())
        table = self._read(unit, [unit.row_group], self.columns, expr, select=True)
        if table.num_rows == 0:
            return
        columns = self._tensors(table)
        order = rng.permutation(table.num_rows) if rng is not None else range(table.num_rows)
        for i in order:
            yield {name: value[i] for name, value in columns.items()}

    def _keys(self, unit: Unit, row_group: int) -> list[tuple[str, int]]:
        table = self._read(unit, [row_group], list(KEY_COLUMNS), None)
        return list(zip(table.column("clip_id").to_pylist(), table.column("track_id").to_pylist()))

    def _track_rows(self, unit: Unit) -> pa.Table:
        """Rows of the tracks whose first row is in ``unit`` (continuations included)."""
        keys = self._keys(unit, unit.row_group)
        if not keys:
            return pa.table({})
        skip = self._keys(unit, unit.row_group - 1)[-1] if unit.row_group > 0 else None
        last = keys[-1]
        extension = []
        row_group = unit.row_group + 1
        while row_group < unit.num_row_groups and last != skip:
            following = self._keys(unit, row_group)
            if not following or following[0] != last:
                break
            extension.append(row_group)
            if following[-1] != last:
                break
            row_group += 1
        columns = list(dict.fromkeys([*self.columns, *KEY_COLUMNS, "frame_index", "inlier"]))
        expr = self.filter.track_expression(self.e_norm_threshold, self.selection)
        if self.filter.detected_only:
            expr = _and(expr, pc.field("has_detection") == True)  # noqa: E712
        own = self._read(unit, [unit.row_group], columns, expr, select=True)
        if skip is not None:
            own = own.filter(~((pc.field("clip_id") == skip[0]) & (pc.field("track_id") == skip[1])))
        parts = [own]
        if extension and last != skip:
            more = self._read(unit, extension, columns, expr, select=True)
            parts.append(more.filter((pc.field("clip_id") == last[0]) & (pc.field("track_id") == last[1])))
        table = pa.concat_tables(parts)
        return table.sort_by([("clip_id", "ascending"), ("track_id", "ascending"), ("frame_index", "ascending")])

    def _window_samples(self, unit: Unit, rng: np.random.Generator | None) -> Iterator[dict[str, Any]]:
        table = self._track_rows(unit)
        if table.num_rows == 0:
            return
        length, stride = self.sequence.length, self.sequence.stride
        clip = table.column("clip_id").to_pylist()
        track = table.column("track_id").to_numpy()
        frame = table.column("frame_index").to_numpy()
        usable = table.column("inlier").to_numpy(zero_copy_only=False) if self.filter.inliers_only else np.ones(len(frame), bool)
        same = np.zeros(len(frame), bool)
        same[1:] = (track[1:] == track[:-1]) & (frame[1:] == frame[:-1] + 1) & np.array(
            [a == b for a, b in zip(clip[1:], clip[:-1])], dtype=bool
        )
        starts: list[int] = []
        i, n = 0, len(frame)
        while i < n:
            if not usable[i]:
                i += 1
                continue
            j = i + 1
            while j < n and usable[j] and same[j]:
                j += 1
            starts += range(i, j - length + 1, stride)
            i = j
        if not starts:
            return
        columns = self._tensors(table)
        constant = {n for n in columns if n in self.schema.names and self.schema.field(n).type in TEXT_TYPES}
        order = rng.permutation(len(starts)) if rng is not None else range(len(starts))
        for k in order:
            s = starts[k]
            yield {name: (value[s] if name in constant else value[s:s + length]) for name, value in columns.items()}

"""The selection written back into the data: true ``selected`` columns and the ``frames_selected/`` view.

Fits are committed before the selection is known, so a committed shard says
``track_selected = False`` / ``selected = False`` on every row. Once the selection has run
(:func:`pipeline.dataset.selection.table.select_output`), :func:`publish_selection` makes
the files tell the truth to any tool that reads them without vid2mesh (pandas, duckdb,
HuggingFace ``datasets``):

* every ``frames/`` and ``tracks/`` file of a committed shard gets its selection columns
  rewritten to the verdict (``track_selected``; ``selected``, ``selection_reason`` and
  ``e_norm_threshold``); rows of a clip copy that another shard owns get ``False``, so a
  filter on ``track_selected`` never counts a clip twice;
* ``frames_selected/<shard>.<split>.parquet`` holds exactly the frames of the selected
  tracks (owning shard only), one file per shard and source split: the rows that
  ``read_frames(OUTPUT, FrameFilter(selected_only=True))`` returns. The dataset card's
  default HuggingFace config reads it, split by split.

Each file is rewritten whole and moved into place (atomic per file); a file whose columns
already hold the verdict is left as it is, and view files no longer backed by a selected
row are deleted, so a rerun (``vid2mesh select OUTPUT --keep_fraction 0.2``) updates every
file to the new verdict and an interrupted one is finished by the next.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dataset.manifests import manifest_files, read_manifests
from pipeline.dataset.writer import WriterConfig, parquet_bytes

LOGGER = logging.getLogger(__name__)

SELECTED_VIEW = "frames_selected"
"""Folder of the selected tracks' frames (same columns as ``frames/``)."""
_SEP = "\x1f"


def _keys(*columns: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(*[pc.cast(c, pa.string()) for c in columns], _SEP)


def _with(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with column ``name`` replaced by ``values`` cast to its type (field and
    field metadata kept)."""
    field = table.schema.field(name)
    return table.set_column(table.column_names.index(name), field, pc.cast(values, field.type))


def _changed(old: pa.Table, new: pa.Table, columns: Sequence[str]) -> bool:
    """Whether ``columns`` differ between two versions of a table (NaN equals NaN)."""
    same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731 (NaN != NaN)
    return any(not all(map(same, old.column(c).to_pylist(), new.column(c).to_pylist()))
               for c in columns if c in old.column_names)


def _parquet(table: pa.Table, like: pq.FileMetaData) -> bytes:
    """Parquet bytes of ``table`` with the row groups of the file it replaces (``like``)."""
    rows = like.row_group(0).num_rows if like.num_row_groups else table.num_rows
    return parquet_bytes(table, WriterConfig(output="", row_group_size=max(1, rows)))


def _read(storage, path: str) -> tuple[pa.Table, pq.FileMetaData]:
    data = pq.ParquetFile(io.BytesIO(storage.read_bytes(path)))
    return data.read(), data.metadata


def _selected(table: pa.Table, shard: str, selection: pa.Table) -> pa.ChunkedArray:
    """Whether each row of a shard's ``frames/`` or ``tracks/`` table belongs to a selected
    track of the shard that owns its clip (the selection table names the owner)."""
    chosen = selection.filter(selection.column("selected"))
    selected_keys = _keys(chosen.column("shard"), chosen.column("clip_id"), chosen.column("track_id")).combine_chunks()
    shard_col = pa.array([shard] * table.num_rows, pa.string())
    return pc.is_in(_keys(shard_col, table.column("clip_id"), table.column("track_id")), value_set=selected_keys)


def _true_tracks(table: pa.Table, shard: str, selection: pa.Table) -> pa.Table:
    """``tracks/`` rows with ``selected``, ``selection_reason``, ``e_norm_threshold`` from the selection."""
    table = _with(table, "selected", _selected(table, shard, selection))
    lookup = {(r["clip_id"], r["track_id"]): r for r in
              selection.filter(pc.equal(selection.column("shard"), shard))
              .select(["clip_id", "track_id", "selection_reason", "e_norm_threshold"]).to_pylist()}
    rows = zip(table.column("clip_id").to_pylist(), table.column("track_id").to_pylist())
    entries = [lookup.get(key) for key in rows]
    for name in ("selection_reason", "e_norm_threshold"):
        if name in table.column_names:
            old = table.column(name).to_pylist()
            table = _with(table, name, pa.array([e[name] if e else o for e, o in zip(entries, old)]))
    return table


def publish_selection(output: str, selection: pa.Table, storage, manifests: Sequence[dict[str, Any]] | None = None) -> dict[str, int]:
    """Rewrite the selection columns of every committed shard and the ``frames_selected/`` view.

    Args:
        output: the output folder.
        selection: ``selection/tracks.parquet`` as just computed (clip_id, track_id, shard,
            selected, selection_reason, e_norm_threshold).
        storage: a :class:`pipeline.dataset.fs.Storage`.
        manifests: the committed manifests (default: read them).

    Returns:
        Counts: ``files_rewritten`` (data files whose columns changed), ``view_files``
        and ``view_rows`` (the ``frames_selected/`` view), ``view_files_deleted``.
    """
    manifests = read_manifests(output, storage) if manifests is None else manifests
    counts = {"files_rewritten": 0, "view_files": 0, "view_rows": 0, "view_files_deleted": 0}
    wanted_view: set[str] = set()
    for manifest in manifests:
        shard = manifest["shard"]
        for name in manifest_files(manifest, "tracks"):
            path = storage.join(output, "tracks", name)
            table, meta = _read(storage, path)
            true = _true_tracks(table, shard, selection)
            if _changed(table, true, ("selected", "selection_reason", "e_norm_threshold")):
                storage.write_bytes(path, _parquet(true, meta))
                counts["files_rewritten"] += 1
        for name in manifest_files(manifest, "frames"):
            path = storage.join(output, "frames", name)
            table, meta = _read(storage, path)
            true = _with(table, "track_selected", _selected(table, shard, selection))
            if _changed(table, true, ("track_selected",)):
                storage.write_bytes(path, _parquet(true, meta))
                counts["files_rewritten"] += 1
            view = true.filter(true.column("track_selected"))
            if view.num_rows:
                view_path = storage.join(output, SELECTED_VIEW, name)
                data = _parquet(view, meta)
                if not storage.exists(view_path) or storage.read_bytes(view_path) != data:
                    storage.write_bytes(view_path, data)
                wanted_view.add(name)
                counts["view_files"] += 1
                counts["view_rows"] += view.num_rows
    for path in storage.list(storage.join(output, SELECTED_VIEW)):
        base = path.replace("\\", "/").rsplit("/", 1)[-1]
        if base.endswith(".parquet") and base not in wanted_view:
            storage.delete(path)
            counts["view_files_deleted"] += 1
    LOGGER.info("selection written into the data: %d files rewritten, %s/ holds %d rows in %d files",
                counts["files_rewritten"], SELECTED_VIEW, counts["view_rows"], counts["view_files"])
    return counts

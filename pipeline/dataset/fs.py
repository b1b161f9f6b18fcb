"""One filesystem layer for everything that reads (or re-selects) an output folder.

Every reader of an output (:mod:`pipeline.dataset.reader`, ``vid2mesh report``,
``vid2mesh render``, ``vid2mesh evaluate``, ``vid2mesh select``) opens paths through
:func:`resolve`, which gives a ``pyarrow.fs.FileSystem`` and the path inside it:

* a local path (``out/``, ``/data/out``): ``pyarrow.fs.LocalFileSystem``;
* a URI pyarrow knows (``gs://bucket/out``, ``s3://...``, ``hdfs://...``): pyarrow's own
  filesystem (``GcsFileSystem`` uses the usual Google credentials);
* any other fsspec URI (``memory://``, ``gcs://`` through gcsfs, ...): the fsspec
  filesystem wrapped in ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``;
* or an explicit ``filesystem=`` (a ``pyarrow.fs.FileSystem`` such as a
  ``SubTreeFileSystem``, or an fsspec filesystem), with the path inside it.

Writers go through :class:`Storage`, the few file operations they need. :class:`ArrowStorage`
implements it over any of the filesystems above (local disk by default, with atomic writes);
the Beam layer's ``transforms.storage.BeamStorage`` implements it over Beam's ``FileSystems``.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.fs as pafs


class Storage(Protocol):
    """The few file operations the writer needs (paths are strings: local or URLs)."""

    def join(self, *parts: str) -> str: ...
    def write_bytes(self, path: str, data: bytes) -> None: ...  # whole file, moved into place
    def read_bytes(self, path: str) -> bytes: ...
    def list(self, folder: str) -> list[str]: ...  # files directly inside folder (full paths)
    def delete(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...


TEMPORARY_NAME = re.compile(r"\.tmp-[0-9a-f]{8}$")
"""The name a local write has until it is moved into place (a killed writer leaves it)."""


def as_arrow(filesystem: Any) -> pafs.FileSystem:
    """A ``pyarrow.fs.FileSystem`` from a pyarrow or fsspec filesystem."""
    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))


def resolve(path: str | os.PathLike, filesystem: Any = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a local path, a URI, or a path in ``filesystem``."""
    text = os.fspath(path)
    if filesystem is not None:
        return as_arrow(filesystem), text
    if "://" not in text:
        return pafs.LocalFileSystem(), text
    try:
        return pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec

        fs, inner = fsspec.core.url_to_fs(text)
        return as_arrow(fs), inner


def is_local(filesystem: pafs.FileSystem) -> bool:
    return isinstance(filesystem, pafs.LocalFileSystem)


def join(filesystem: pafs.FileSystem, *parts: str) -> str:
    return os.path.join(*parts) if is_local(filesystem) else posixpath.join(*parts)


def file_type(filesystem: pafs.FileSystem, path: str) -> pafs.FileType:
    return filesystem.get_file_info(path).type


def is_file(filesystem: pafs.FileSystem, path: str) -> bool:
    return file_type(filesystem, path) == pafs.FileType.File


def is_dir(filesystem: pafs.FileSystem, path: str) -> bool:
    return file_type(filesystem, path) == pafs.FileType.Directory


def list_files(filesystem: pafs.FileSystem, folder: str, suffix: str = "") -> list[str]:
    """Files directly inside ``folder`` ending with ``suffix`` (sorted; [] if no folder)."""
    if not is_dir(filesystem, folder):
        return []
    infos = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=False))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix)
                  and not (posixpath.basename(i.path).startswith((".", "_")) or ".tmp-" in i.path))


def read_bytes(filesystem: pafs.FileSystem, path: str) -> bytes:
    with filesystem.open_input_stream(path) as handle:
        return handle.read()


def write_local(path: str, data: bytes) -> None:
    """Write a whole local file: to a temporary name (:data:`TEMPORARY_NAME`), flushed to
    disk, then ``os.replace``-d into place, so readers never see a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(filesystem: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a whole file (local: :func:`write_local`)."""
    if is_local(filesystem):
        return write_local(path, data)
    parent = posixpath.dirname(path)
    if parent:
        filesystem.create_dir(parent, recursive=True)
    with filesystem.open_output_stream(path) as handle:
        handle.write(data)


class ArrowStorage:
    """:class:`Storage` over a ``pyarrow.fs.FileSystem`` (or an fsspec one): the local disk
    by default, or the filesystem :func:`resolve` gives for a path or URI."""

    def __init__(self, filesystem: Any = None):
        self.filesystem = as_arrow(filesystem) if filesystem is not None else pafs.LocalFileSystem()

    @classmethod
    def for_path(cls, path: str | os.PathLike, filesystem: Any = None) -> tuple["ArrowStorage", str]:
        fs, inner = resolve(path, filesystem)
        return cls(fs), inner

    def join(self, *parts: str) -> str:
        return join(self.filesystem, *parts)

    def write_bytes(self, path: str, data: bytes) -> None:
        write_bytes(self.filesystem, path, data)

    def read_bytes(self, path: str) -> bytes:
        return read_bytes(self.filesystem, path)

    def list(self, folder: str) -> list[str]:
        if not is_dir(self.filesystem, folder):
            return []
        if is_local(self.filesystem):  # the paths as os.path.join spells them
            return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                          if os.path.isfile(os.path.join(folder, name)))
        infos = self.filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def delete(self, path: str) -> None:
        if is_file(self.filesystem, path):
            self.filesystem.delete_file(path)

    def exists(self, path: str) -> bool:
        return file_type(self.filesystem, path) != pafs.FileType.NotFound

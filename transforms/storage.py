"""Files through Beam's ``FileSystems``: the writer's storage and remote-input staging.

Local paths and every scheme Beam knows (gs://, s3://, ...) work the same way; workers
copy a remote video (and its keypoints) into a temporary folder before perception, since
the decoders read local files.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from apache_beam.io.filesystems import FileSystems

from pipeline.dataset.fs import ArrowStorage


def is_remote(path: str | None) -> bool:
    return bool(path) and "://" in path


class BeamStorage:
    """:class:`pipeline.dataset.fs.Storage` over Beam ``FileSystems`` (local disk delegated to
    :class:`~pipeline.dataset.fs.ArrowStorage` for atomic ``os.replace`` writes)."""

    def __init__(self) -> None:
        self._local = ArrowStorage()

    def join(self, *parts: str) -> str:
        if is_remote(parts[0]):
            return FileSystems.join(*parts)
        return os.path.join(*parts)

    def write_bytes(self, path: str, data: bytes) -> None:
        if not is_remote(path):
            return self._local.write_bytes(path, data)
        # Object stores publish an object only when its upload completes: atomic.
        with FileSystems.create(path) as handle:
            handle.write(data)

    def read_bytes(self, path: str) -> bytes:
        if not is_remote(path):
            return self._local.read_bytes(path)
        with FileSystems.open(path) as handle:
            return handle.read()

    def list(self, folder: str) -> list[str]:
        if not is_remote(folder):
            return self._local.list(folder)
        result = FileSystems.match([FileSystems.join(folder, "*")])[0]
        return sorted(m.path for m in result.metadata_list)

    def delete(self, path: str) -> None:
        if not is_remote(path):
            return self._local.delete(path)
        if FileSystems.exists(path):
            FileSystems.delete([path])

    def exists(self, path: str) -> bool:
        return FileSystems.exists(path)


def list_files(pattern: str) -> list[str]:
    """Files matching a glob, local or remote (for :func:`pipeline.perception.inputs.read_inputs`)."""
    if not is_remote(pattern):
        from pipeline.perception.inputs import local_list_files

        return local_list_files(pattern)
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def scheme_problem(uri: str) -> str | None:
    """Why the job cannot read ``uri`` (None when it can): its scheme is not one of
    :data:`pipeline.perception.inputs.REMOTE_SCHEMES`, or Beam's file system for it is not
    installed here (for :func:`pipeline.perception.inputs.read_inputs`)."""
    from pipeline.perception.inputs import default_scheme_problem, unsupported_scheme_message, uri_scheme

    problem = default_scheme_problem(uri)
    if problem or uri_scheme(uri) in ("", "file"):
        return problem
    try:
        FileSystems.get_filesystem(uri)
    except (ValueError, ImportError):
        return unsupported_scheme_message(uri, f" here: Beam's {uri_scheme(uri)}:// file system is not installed "
                                               "(install the apache-beam extra for it, e.g. apache-beam[gcp] for gs://)")
    return None


def read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8", errors="replace")


def exists(path: str) -> bool:
    """True for an existing file or folder (local), or object / prefix (remote)."""
    if not is_remote(path):
        return os.path.exists(path)
    if FileSystems.exists(path):
        return True
    return bool(FileSystems.match([path.rstrip("/") + "/*"])[0].metadata_list)


def stage_local(uri: str, folder: str) -> str:
    """A local copy of ``uri`` inside ``folder`` (a folder of files is copied too); local
    paths, and remote ones that do not exist, are returned as they are."""
    if not is_remote(uri):
        return uri
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    target = os.path.join(folder, name)
    if FileSystems.exists(uri):
        with FileSystems.open(uri) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return target
    children = FileSystems.match([uri.rstrip("/") + "/*"])[0].metadata_list
    if not children:  # missing: perception reports it with its reason
        return uri
    os.makedirs(target, exist_ok=True)  # a folder (OpenPose per-frame JSON)
    for meta in children:
        with FileSystems.open(meta.path) as src, open(os.path.join(target, meta.path.rsplit("/", 1)[-1]), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


def temporary_folder() -> str:
    return tempfile.mkdtemp(prefix="vid2mesh-")

"""Loading the user's SMPL model files (and SMPLify-style pickles) safely.

The official SMPL ``.pkl`` files are Python-2 pickles holding numpy arrays, a SciPy sparse
joint regressor and chumpy objects; chumpy does not work on Python 3.11. They are read here
with :class:`RestrictedUnpickler`, a :class:`pickle.Unpickler` whose ``find_class`` only
hands out a short whitelist: numpy's array reconstruction, SciPy sparse matrices (rebuilt
from their state) and chumpy arrays, which are mapped to :class:`ChumpyState`, a plain
holder of their pickled state. Any other class is refused with an error naming the file
and the class, so no pickled code is ever executed.

``vid2mesh convert-smpl IN.pkl OUT.npz`` (:func:`convert_smpl`) writes the arrays once to an
``.npz`` file that loads with ``allow_pickle=False``. :func:`load_smpl_arrays` reads either
format and checks every array's shape; :func:`smplx_data_struct` turns the arrays into the
``data_struct`` that ``smplx.SMPL`` accepts instead of unpickling a file itself.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from models.joint_names import SMPL24_PARENTS, SMPL_NUM_FACES, SMPL_NUM_VERTICES

logger = logging.getLogger(__name__)

GENDERS: tuple[str, ...] = ("neutral", "male", "female")


def _official_names(tag: str) -> tuple[str, ...]:
    """The SMPL download's file names for one gender tag (``neutral``, ``m``, ``f``): the
    v1.1.0 release (current) and v1.0.0, ``.npz`` (converted) before ``.pkl``."""
    return tuple(f"basicmodel_{tag}_lbs_10_207_0_v{version}.{ext}" for version in ("1.1.0", "1.0.0") for ext in ("npz", "pkl"))


# File names the user's folder may hold, per gender (official downloads, smplx's layout,
# converted files and the project's stand-in). A folder is searched without regard to
# case (the downloads spell ``basicModel`` and ``basicmodel``).
MODEL_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "neutral": ("SMPL_NEUTRAL.npz", "SMPL_NEUTRAL.pkl", *_official_names("neutral"), "smpl_vid2mesh_standin_neutral.pkl"),
    "male": ("SMPL_MALE.npz", "SMPL_MALE.pkl", *_official_names("m"), "smpl_vid2mesh_standin_male.pkl"),
    "female": ("SMPL_FEMALE.npz", "SMPL_FEMALE.pkl", *_official_names("f"), "smpl_vid2mesh_standin_female.pkl"),
}


def gender_from_file_name(path: str | os.PathLike) -> str | None:
    """The gender a model file's name states, or None when it says none.

    ``SMPL_FEMALE.pkl`` -> female, ``basicmodel_m_lbs_10_207_0_v1.1.0.pkl`` -> male,
    ``basicModel_neutral_...`` -> neutral; only the file name counts, not its folders.
    """
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1].lower()
    for gender in ("female", "male", "neutral"):  # "female" first: it contains "male"
        if gender in name:
            return gender
    if "_f_" in name:
        return "female"
    if "_m_" in name:
        return "male"
    return None

REQUIRED_KEYS: tuple[str, ...] = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "f",
)
OPTIONAL_KEYS: tuple[str, ...] = ("J", "vert_sym_idxs")


class ModelFileError(ValueError):
    """A body-model or prior file that is missing a key, has wrong shapes or is unsafe."""


class UnsafePickleError(ModelFileError, pickle.UnpicklingError):
    """A pickle that holds a class outside the whitelist (nothing of it was executed)."""


class ChumpyState:
    """Harmless stand-in for a pickled chumpy object: keeps its state, runs nothing.

    Attributes:
        chumpy_class: ``module.name`` of the original chumpy class.
        state: the pickled ``__dict__`` (``x`` holds the array of a plain ``Ch``).
    """

    chumpy_class = "chumpy.ch.Ch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}
        if args:
            self.state["x"] = args[0]

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected chumpy state of type {type(state).__name__}")
        self.state = dict(state)

    def to_array(self) -> np.ndarray:
        """Value of the chumpy expression (plain arrays and reorderings only)."""
        name = self.chumpy_class.rsplit(".", 1)[-1]
        s = self.state
        if "x" in s and name in ("Ch",):
            return np.asarray(_to_plain(s["x"]))
        if "a" in s:
            inner = _to_plain(s["a"])
            a = np.asarray(inner)
            if name == "Reshape":
                return a.reshape(s["newshape"])
            if name == "Select":
                out = a.ravel()[np.asarray(s["idxs"])].copy()
                return out.reshape(s["preferred_shape"]) if "preferred_shape" in s else out
            if name == "transpose":
                return np.transpose(a, axes=s.get("axes"))
        if "x" in s:
            return np.asarray(_to_plain(s["x"]))
        raise ModelFileError(
            f"cannot evaluate the chumpy object {self.chumpy_class} (state keys "
            f"{sorted(s)}); convert the file with chumpy on Python 2 "
            "(np.array(value) for every entry) and pass the result"
        )


def _chumpy_class(module: str, name: str) -> type[ChumpyState]:
    return type(name, (ChumpyState,), {"chumpy_class": f"{module}.{name}"})


class SparseState:
    """Stand-in for a pickled SciPy sparse matrix, rebuilt from its state after loading."""

    sparse_format = "csc"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("unexpected sparse-matrix state")
        self.state = dict(state)

    def to_matrix(self) -> scipy.sparse.spmatrix:
        s = self.state
        shape = s.get("_shape", s.get("shape"))
        if shape is None or not all(k in s for k in ("data", "indices", "indptr")):
            raise ModelFileError(f"sparse matrix state lacks data/indices/indptr/shape: {sorted(s)}")
        build = scipy.sparse.csc_matrix if self.sparse_format == "csc" else scipy.sparse.csr_matrix
        return build(
            (np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"])),
            shape=tuple(int(v) for v in shape),
        )


def _sparse_class(fmt: str) -> type[SparseState]:
    return type(f"{fmt}_matrix", (SparseState,), {"sparse_format": fmt})


_CSC, _CSR = _sparse_class("csc"), _sparse_class("csr")


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copy_reg._reconstructor`` restricted to the whitelisted stand-in classes."""
    if base is not object or not isinstance(cls, type) or not issubclass(cls, (ChumpyState, SparseState)):
        raise pickle.UnpicklingError(f"refusing copy_reg._reconstructor({cls!r}, {base!r})")
    return cls.__new__(cls)


def _latin1_bytes(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes into protocol-2 pickles (latin-1 only)."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_SPARSE_MODULES = {
    "scipy.sparse.csc",
    "scipy.sparse._csc",
    "scipy.sparse.csr",
    "scipy.sparse._csr",
    "scipy.sparse.compressed",
    "scipy.sparse._compressed",
}
_CHUMPY_CLASSES = {
    ("chumpy.ch", "Ch"),
    ("chumpy.reordering", "Reshape"),
    ("chumpy.reordering", "Select"),
    ("chumpy.reordering", "transpose"),
    ("chumpy.reordering", "Permute"),
    ("chumpy.reordering", "Reorder"),
}
_BUILTINS_ALLOWED = {"set", "frozenset", "object", "slice", "complex"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves numpy arrays, SciPy sparse matrices and chumpy data.

    Args:
        file: binary file object.
        source: name of the file for error messages.
    """

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_ALLOWED:
            return super().find_class(module, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        if module == "_codecs" and name == "encode":
            return _latin1_bytes
        if module in ("__builtin__", "builtins") and name in _BUILTINS_ALLOWED:
            return super().find_class("builtins", name)
        if module in _SPARSE_MODULES and name in ("csc_matrix", "csr_matrix"):
            return _CSC if name == "csc_matrix" else _CSR
        if (module, name) in _CHUMPY_CLASSES:
            return _chumpy_class(module, name)
        raise UnsafePickleError(
            f"{self.source}: refusing to load class {module}.{name} from the pickle (only "
            "numpy arrays, SciPy sparse matrices and chumpy arrays are allowed; nothing in "
            "the file was executed). Pass an official SMPL / SMPLify file or a .npz made by "
            "`vid2mesh convert-smpl`."
        )


def _to_plain(value: Any) -> Any:
    """Replace stand-in objects by numpy arrays / SciPy matrices, recursively."""
    if isinstance(value, ChumpyState):
        return value.to_array()
    if isinstance(value, SparseState):
        return value.to_matrix()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_plain(v) for v in value)
    return value


def load_npz_safely(path: Path, remedy: str, needed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The arrays of an ``.npz`` read with ``allow_pickle=False`` (no pickled object runs).

    Args:
        path: the ``.npz`` file.
        remedy: what to do, appended to every error.
        needed: the entries the caller uses; an object-typed (pickled) entry outside them
            is left out with a log line. None: every entry is needed.

    Raises:
        ModelFileError: naming the file, the reason and ``remedy`` (what to do); for a
            needed object-typed entry, its name.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays: dict[str, Any] = {}
            for key in data.files:
                try:
                    arrays[key] = data[key]
                except ValueError as exc:  # an object array: its pickle is never run
                    if needed is None or key in needed:
                        raise ModelFileError(
                            f"{path}: entry {key!r} is an object (pickled) array, which is never unpickled; {remedy}"
                        ) from exc
                    logger.info("%s: leaving out the object-typed entry %r (not used)", path, key)
            return arrays
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path}: cannot read as .npz without pickles ({exc}); {remedy}") from exc


def load_pickle_safely(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` and resolve stand-in objects.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the pickle holds a class outside the whitelist.
        ModelFileError: the file is not a readable pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; check the path to the model file")
    try:
        with open(path, "rb") as handle:
            raw = RestrictedUnpickler(handle, str(path)).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ModelFileError(
            f"{path}: not a readable pickle ({type(exc).__name__}: {exc}); the file is "
            "corrupt or not a model file, download it again"
        ) from exc
    try:
        return _to_plain(raw)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc


def _array(value: Any, key: str, path: Path) -> np.ndarray:
    if scipy.sparse.issparse(value):
        return np.asarray(value.toarray())
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad file
        raise ModelFileError(f"{path}: entry {key!r} is not an array ({exc})") from exc
    if array.dtype == object:
        raise ModelFileError(f"{path}: entry {key!r} is not a numeric array")
    return array


def validate_smpl_arrays(arrays: dict[str, Any], path: str | os.PathLike) -> None:
    """Check keys and shapes of SMPL model arrays; raise :class:`ModelFileError` if wrong."""
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ModelFileError(
            f"{path}: not an SMPL model file, missing {', '.join(missing)}; pass the "
            "official SMPL .pkl, a .npz from `vid2mesh convert-smpl` or a stand-in "
            "from `vid2mesh make-body-model`"
        )
    v = SMPL_NUM_VERTICES
    shapedirs = arrays["shapedirs"]
    expected = {
        "v_template": (v, 3),
        "posedirs": (v, 3, 207),
        "J_regressor": (24, v),
        "weights": (v, 24),
        "kintree_table": (2, 24),
        "f": (SMPL_NUM_FACES, 3),
    }
    wrong = [
        f"{k} has shape {tuple(np.shape(arrays[k]))}, expected {shape}"
        for k, shape in expected.items()
        if tuple(np.shape(arrays[k])) != shape
    ]
    sd_shape = tuple(np.shape(shapedirs))
    if len(sd_shape) != 3 or sd_shape[:2] != (v, 3) or sd_shape[2] < 10:
        wrong.append(f"shapedirs has shape {sd_shape}, expected ({v}, 3, >=10)")
    if wrong:
        raise ModelFileError(
            f"{path}: wrong array shapes ({'; '.join(wrong)}); this is not an SMPL body "
            "model (SMPL-H / SMPL-X files are not supported), pass an SMPL file"
        )
    parents = np.asarray(arrays["kintree_table"])[0].astype(np.int64)
    parents = np.where(parents > 23, -1, parents)
    if tuple(parents[1:]) != SMPL24_PARENTS[1:]:
        raise ModelFileError(f"{path}: kintree_table is not SMPL's kinematic tree; pass an SMPL file")
    for k in ("v_template", "shapedirs", "posedirs", "weights"):
        if not np.all(np.isfinite(np.asarray(arrays[k], dtype=np.float64))):
            raise ModelFileError(f"{path}: {k} holds NaN or inf; the file is corrupt")


def load_smpl_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an SMPL model (``.pkl`` official/stand-in, or ``.npz`` converted) safely.

    Returns:
        dict of numpy arrays: ``v_template`` (6890, 3), ``shapedirs`` (6890, 3, B),
        ``posedirs`` (6890, 3, 207), ``J_regressor`` (24, 6890) dense, ``weights``
        (6890, 24), ``kintree_table`` (2, 24), ``f`` (13776, 3), and ``J`` /
        ``vert_sym_idxs`` when the file has them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such SMPL model file; download SMPL from https://smpl.is.tue.mpg.de "
            "or create the stand-in with `vid2mesh make-body-model DIR`"
        )
    if path.suffix == ".npz":
        raw: dict[str, Any] = load_npz_safely(
            path, "recreate it with `vid2mesh convert-smpl IN.pkl OUT.npz` from the official SMPL .pkl, or pass "
            "that .pkl itself", needed=REQUIRED_KEYS + OPTIONAL_KEYS)
    else:
        raw = load_pickle_safely(path)
        if not isinstance(raw, dict):
            raise ModelFileError(f"{path}: holds a {type(raw).__name__}, not an SMPL model dict")
    validate_smpl_arrays(raw, path)
    arrays = {k: _array(raw[k], k, path) for k in REQUIRED_KEYS}
    for k in OPTIONAL_KEYS:
        if k in raw:
            arrays[k] = _array(raw[k], k, path)
    return arrays


def convert_smpl(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert an SMPL ``.pkl`` (chumpy or not) to an ``.npz`` loadable without pickles.

    Args:
        src: official SMPL ``.pkl`` (or any file :func:`load_smpl_arrays` reads).
        dst: output ``.npz`` path (``.npz`` is appended when missing).

    Returns:
        The written path.
    """
    dst = Path(dst)
    if dst.suffix != ".npz":
        dst = dst.with_name(dst.name + ".npz")
    arrays = load_smpl_arrays(src)
    out = {
        "v_template": arrays["v_template"].astype(np.float64),
        "shapedirs": arrays["shapedirs"].astype(np.float64),
        "posedirs": arrays["posedirs"].astype(np.float64),
        "J_regressor": arrays["J_regressor"].astype(np.float64),
        "weights": arrays["weights"].astype(np.float64),
        "kintree_table": arrays["kintree_table"].astype(np.int64),
        "f": arrays["f"].astype(np.int64),
    }
    for k in OPTIONAL_KEYS:
        if k in arrays:
            out[k] = arrays[k]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(dst)
    logger.info("converted %s -> %s", src, dst)
    return dst


def resolve_model_path(path: str | os.PathLike, gender: str | None = None) -> Path:
    """The model file for ``path``: the file itself, or the ``gender`` file in a folder.

    Args:
        path: a model file, or a folder holding one per gender (official names,
            ``SMPL_<GENDER>.pkl``/``.npz``, or the stand-in names).
        gender: "neutral", "male" or "female" (folder lookup; default neutral).
    """
    if gender is not None and gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r} for {path}; use one of {', '.join(GENDERS)}")
    path = Path(path)
    if path.is_dir():
        g = gender or "neutral"
        for sub in (path, path / "smpl"):
            files = {p.name.lower(): p for p in sorted(sub.iterdir()) if p.is_file()} if sub.is_dir() else {}
            for name in MODEL_FILE_NAMES[g]:
                if name.lower() in files:
                    return files[name.lower()]
        raise FileNotFoundError(
            f"{path}: no {g} SMPL model in this folder (looked for "
            f"{', '.join(MODEL_FILE_NAMES[g])}); pass the model file itself"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such SMPL model file; download SMPL from https://smpl.is.tue.mpg.de "
            "or create the stand-in with `vid2mesh make-body-model DIR`"
        )
    return path


def smplx_data_struct(arrays: dict[str, np.ndarray]) -> Any:
    """``smplx.utils.Struct`` for ``smplx.SMPL(model_path=..., data_struct=...)``."""
    from smplx.utils import Struct

    return Struct(**arrays)

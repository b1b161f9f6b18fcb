"""Loading SMPL files safely: chumpy pickles convert, foreign classes are refused."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from models.body_model import BodyModel
from models.smpl_io import (
    ModelFileError,
    UnsafePickleError,
    convert_smpl,
    load_pickle_safely,
    load_smpl_arrays,
    resolve_model_path,
)


def _standin_arrays(standin):
    with open(standin.neutral, "rb") as handle:
        return pickle.load(handle)


@pytest.fixture
def fake_chumpy(monkeypatch):
    """Modules named like chumpy's, so pickles reference chumpy.ch.Ch as the real files do."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = {"x"}
            self._itr = None
            self._make_dense = False
            self._make_sparse = False
            self._depends_on_deps = {}

        def __getstate__(self):
            return dict(self.__dict__)

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a = a
            self.idxs = idxs
            self.preferred_shape = preferred_shape
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch.Ch = Ch
    reordering.Select = Select
    chumpy.ch, chumpy.reordering = ch, reordering
    for name, module in (("chumpy", chumpy), ("chumpy.ch", ch), ("chumpy.reordering", reordering)):
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(Ch=Ch, Select=Select)


@pytest.mark.parametrize("protocol", [1, 2])
def test_chumpy_pickle_converts(standin, fake_chumpy, tmp_path, protocol):
    arrays = _standin_arrays(standin)
    official_like = dict(arrays)
    official_like["shapedirs"] = fake_chumpy.Ch(arrays["shapedirs"])
    official_like["J"] = fake_chumpy.Ch(arrays["J"])
    weights = fake_chumpy.Ch(arrays["weights"].ravel())
    official_like["weights"] = fake_chumpy.Select(weights, np.arange(6890 * 24), (6890, 24))
    official_like["bs_style"] = "lbs"
    src = tmp_path / f"chumpy_style_p{protocol}.pkl"
    with open(src, "wb") as handle:
        pickle.dump(official_like, handle, protocol=protocol)
    # The file really references chumpy: plain pickle needs the (fake) chumpy modules.
    assert b"chumpy" in src.read_bytes()
    for name in ("chumpy", "chumpy.ch", "chumpy.reordering"):
        del sys.modules[name]
    with pytest.raises(ModuleNotFoundError):
        with open(src, "rb") as handle:
            pickle.load(handle, encoding="latin1")

    out = convert_smpl(src, tmp_path / "converted.npz")
    with np.load(out, allow_pickle=False) as data:
        converted = {k: data[k] for k in data.files}
    for key in ("v_template", "shapedirs", "posedirs", "weights", "J"):
        assert np.array_equal(converted[key], np.asarray(arrays[key], dtype=converted[key].dtype)), key
    assert np.array_equal(converted["J_regressor"], arrays["J_regressor"].toarray())
    assert np.array_equal(converted["f"], arrays["f"].astype(np.int64))

    pose = torch.randn(3, 72, dtype=torch.float64) * 0.5
    betas = torch.randn(3, 10, dtype=torch.float64)
    from_npz = BodyModel.from_file(out, dtype=torch.float64)
    from_pkl = BodyModel.from_file(standin.neutral, dtype=torch.float64)
    assert torch.equal(from_npz.vertices(pose, betas), from_pkl.vertices(pose, betas))
    # The chumpy pickle itself also loads directly (through the restricted unpickler).
    direct = BodyModel.from_file(src, dtype=torch.float64)
    assert torch.equal(direct.joints(pose, betas), from_pkl.joints(pose, betas))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_foreign_class_is_refused_without_running(standin, tmp_path, protocol):
    marker = tmp_path / "pwned"
    arrays = dict(_standin_arrays(standin))
    arrays["v_template"] = _RunsCode(marker)
    bad = tmp_path / "evil.pkl"
    with open(bad, "wb") as handle:
        pickle.dump(arrays, handle, protocol=protocol)
    with pytest.raises(UnsafePickleError) as info:
        load_smpl_arrays(bad)
    message = str(info.value)
    assert str(bad) in message and "system" in message
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        BodyModel.from_file(bad)
    assert not marker.exists()


def test_other_dangerous_globals_are_refused(tmp_path):
    for payload in (eval, print, getattr, scipy.sparse.load_npz):
        path = tmp_path / "bad.pkl"
        path.write_bytes(pickle.dumps({"x": payload}, protocol=2))
        with pytest.raises(UnsafePickleError, match="refusing to load class"):
            load_pickle_safely(path)


def test_bad_files_raise_clear_errors(standin, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        load_smpl_arrays(tmp_path / "missing.pkl")
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(os.urandom(1000))
    with pytest.raises(ModelFileError, match="corrupt.pkl"):
        load_smpl_arrays(corrupt)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(standin.neutral.read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="truncated.pkl"):
        load_smpl_arrays(truncated)

    arrays = dict(_standin_arrays(standin))
    arrays["v_template"] = arrays["v_template"][:100]
    wrong = tmp_path / "wrong_shape.pkl"
    wrong.write_bytes(pickle.dumps(arrays, protocol=2))
    with pytest.raises(ModelFileError, match=r"wrong_shape.pkl.*v_template has shape \(100, 3\)"):
        load_smpl_arrays(wrong)

    arrays = dict(_standin_arrays(standin))
    del arrays["posedirs"]
    missing_key = tmp_path / "missing_key.pkl"
    missing_key.write_bytes(pickle.dumps(arrays, protocol=2))
    with pytest.raises(ModelFileError, match="missing posedirs"):
        load_smpl_arrays(missing_key)

    with_objects = tmp_path / "objects.npz"
    np.savez(with_objects, v_template=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="objects.npz"):
        load_smpl_arrays(with_objects)

    with pytest.raises(ValueError, match="unknown gender 'robot'"):
        BodyModel.from_file(standin.neutral, gender="robot")
    with pytest.raises(ValueError, match="unknown gender"):
        resolve_model_path(standin.directory, "other")


def test_resolve_model_path_in_folder(standin, tmp_path):
    assert resolve_model_path(standin.directory, "female") == standin.female
    assert resolve_model_path(standin.directory) == standin.neutral
    assert resolve_model_path(standin.male) == standin.male
    with pytest.raises(FileNotFoundError, match="no male SMPL model"):
        resolve_model_path(tmp_path, "male")


def test_convert_smpl_command(standin, tmp_path, capsys):
    from pipeline.commands.models import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert-smpl", str(standin.female), str(tmp_path / "female")])
    assert args.func(args) == 0
    assert (tmp_path / "female.npz").is_file()
    assert "female.npz" in capsys.readouterr().out
    args = parser.parse_args(["convert-smpl", str(tmp_path / "nope.pkl"), str(tmp_path / "x.npz")])
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        args.func(args)


@pytest.mark.parametrize("gender,tag", [("neutral", "neutral"), ("male", "m"), ("female", "f")])
def test_a_folder_of_the_current_smpl_download_is_found(standin, tmp_path, gender, tag):
    """The v1.1.0 download's names (and the mixed-case spellings) resolve per gender."""
    folder = tmp_path / "smpl"
    folder.mkdir()
    for other_tag in ("neutral", "m", "f"):
        (folder / f"basicmodel_{other_tag}_lbs_10_207_0_v1.1.0.pkl").write_bytes(getattr(standin, gender).read_bytes())
    assert resolve_model_path(tmp_path, gender).name == f"basicmodel_{tag}_lbs_10_207_0_v1.1.0.pkl"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / f"basicModel_{tag}_lbs_10_207_0_v1.0.0.pkl").write_bytes(b"x")
    assert resolve_model_path(mixed, gender).name == f"basicModel_{tag}_lbs_10_207_0_v1.0.0.pkl"


def test_npz_with_an_unused_object_entry_loads_and_a_needed_one_is_named(standin, tmp_path):
    arrays = {k: np.asarray(v) for k, v in load_smpl_arrays(standin.neutral).items()}
    extra = tmp_path / "with_info.npz"
    np.savez(extra, **arrays, pose_training_info=np.array([{"dataset": "x"}], dtype=object))
    loaded = load_smpl_arrays(extra)
    assert "pose_training_info" not in loaded
    np.testing.assert_array_equal(loaded["v_template"], arrays["v_template"])
    needed = tmp_path / "needed_object.npz"
    np.savez(needed, **{**arrays, "posedirs": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ModelFileError, match=r"needed_object.npz: entry 'posedirs' is an object.*convert-smpl"):
        load_smpl_arrays(needed)


@pytest.mark.parametrize("name,gender", [
    ("SMPL_MALE.pkl", "male"), ("SMPL_FEMALE.npz", "female"), ("SMPL_NEUTRAL.pkl", "neutral"),
    ("basicmodel_m_lbs_10_207_0_v1.1.0.pkl", "male"), ("basicModel_f_lbs_10_207_0_v1.0.0.pkl", "female"),
    ("basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl", "neutral"), ("/data/female_user/model.pkl", None),
])  # fmt: skip
def test_gender_from_file_name(name, gender):
    from models.smpl_io import gender_from_file_name

    assert gender_from_file_name(name) == gender

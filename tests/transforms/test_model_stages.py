"""Model-backed stages: model-file checks, the loud stand-in fallback, config overrides
(the real stages run end to end in tests/beam_jobs/test_pseudo_gt_end_to_end.py)."""

from __future__ import annotations

import logging

import pytest

from pipeline.perception.inputs import clip_from_json, clip_to_json
from pipeline.records import ClipRef
from transforms.model_stages import ModelBundleAdjust, ModelPerception, build_dataclass, resolve_model_files


@pytest.fixture
def cache(tmp_path, standin):
    """A model cache whose stand-in is the session's (no second generation)."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "standin").symlink_to(standin.directory, target_is_directory=True)
    return str(tmp_path / "cache")


def test_standin_fallback_is_loud_and_hashed(cache, standin, caplog):
    with caplog.at_level(logging.WARNING):
        files = resolve_model_files(cache_dir=cache, keypoints_source="precomputed")
    assert files.body_model_variant == "standin" and files.body_model.endswith(standin.neutral.name)
    assert "NO --smpl_model GIVEN" in caplog.text and "STAND-IN" in caplog.text
    from pipeline.dataset.schema import file_sha256

    assert files.body_model_sha256 == file_sha256(standin.neutral)
    female = resolve_model_files(cache_dir=cache, gender="female")
    assert female.body_model.endswith(standin.female.name) and female.gender == "female"


def test_user_model_files_are_checked(tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"m")
    files = resolve_model_files(smpl_model=str(model), gmm_prior=str(model))
    assert files.body_model_variant == "smpl" and files.standin_cache is None
    with pytest.raises(FileNotFoundError, match="--hmr_checkpoint and --hmr_mean_params"):
        resolve_model_files(smpl_model=str(model), gmm_prior=str(model), hmr_checkpoint=str(model))
    with pytest.raises(ValueError, match="--keypoints"):
        resolve_model_files(smpl_model=str(model), gmm_prior=str(model), keypoints_source="magic")


@pytest.mark.slow
def test_config_overrides(cache):
    files = resolve_model_files(cache_dir=cache)
    perception = ModelPerception(files, "cpu", "precomputed", None, {"decode": {"target_fps": 10}, "tracking": {"max_people": 3}})
    config = perception.config()
    assert config.decode.target_fps == 10 and config.tracking.max_people == 3 and config.keypoints_source == "precomputed"
    assert ModelPerception(files, keypoints_source="detect").config().keypoints_source == "detect"
    assert ModelPerception(files, detector_runtime="openvino").config().detector_runtime == "openvino"
    assert perception.config().detector_runtime == "torch"
    with pytest.raises(ValueError, match="detector_runtime"):
        ModelPerception(files, detector_runtime="tensorrt")
    assert perception.describe()["config"]["decode"]["target_fps"] == 10
    with pytest.raises(ValueError, match="--perception_config: unknown fields \\['colour'\\]"):
        ModelPerception(files, overrides={"colour": 1})
    with pytest.raises(ValueError, match="--perception_config decode: unknown fields"):
        ModelPerception(files, overrides={"decode": {"fps": 10}})
    with pytest.raises(ValueError, match="--ba_config"):
        ModelBundleAdjust(files, overrides={"solver": "magic"})
    ba = ModelBundleAdjust(files, overrides={"max_iter": 7, "tau_r_schedule": [1.0]})
    assert ba.config().max_iter == 7 and ba.config().tau_r_schedule == (1.0,)
    from optimize.config import BAConfig

    assert build_dataclass(BAConfig, {}, "--ba_config") == BAConfig()


def test_clip_listing_round_trip():
    clip = ClipRef("a_000001_000002", "gs://b/a.mp4", "walk", "train", 1.0, 2.0, "gs://b/a.coco.json", {"k": "v"})
    assert clip_from_json(clip_to_json(clip)) == clip


def test_gender_comes_from_the_model_file_name_unless_given(tmp_path):
    male = tmp_path / "SMPL_MALE.pkl"
    male.write_bytes(b"m")
    assert resolve_model_files(smpl_model=str(male), gmm_prior=str(male)).gender == "male"
    assert resolve_model_files(smpl_model=str(male), gmm_prior=str(male), gender="male").gender == "male"
    with pytest.raises(ValueError, match=r"--gender female contradicts --smpl_model .*SMPL_MALE.pkl.*says male"):
        resolve_model_files(smpl_model=str(male), gmm_prior=str(male), gender="female")
    plain = tmp_path / "model.pkl"
    plain.write_bytes(b"m")
    assert resolve_model_files(smpl_model=str(plain), gmm_prior=str(plain)).gender == "neutral"
    assert resolve_model_files(smpl_model=str(plain), gmm_prior=str(plain), gender="female").gender == "female"

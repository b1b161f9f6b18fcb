"""Nonsense sidecars are ``corrupt_keypoints`` with the field and value, never data.

Checked at load (sizes, nesting, image sizes) and against the probed video
(:meth:`PrecomputedKeypoints.check_video`: size match, coordinate margin, frame ids), and
through :func:`perceive_clip` on a small generated video.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers.video import pattern_video

from pipeline.perception import keypoints_io
from pipeline.perception.decode import DecodeConfig
from pipeline.perception.keypoints_io import COORDINATE_MARGIN, KeypointsError, json_depth, load_keypoints
from pipeline.perception.perceive import PerceptionConfig, load_perception_models, perceive_clip
from pipeline.perception.track import TrackingConfig
from pipeline.records import ClipRef, RejectReason

W, H, FPS, N = 160, 120, 25, 20


def _person(x, y):
    offsets = np.stack([np.linspace(6, -6, 17), np.linspace(-30, 30, 17)], 1)
    return np.concatenate([offsets + [x, y], np.full((17, 1), 0.9)], 1)


def _coco(n=N, width=W, height=H, scale=1.0, frame_offset=0):
    images = [{"id": f + frame_offset, "width": width, "height": height} for f in range(n)]
    annotations = [{"image_id": f + frame_offset, "category_id": 1, "score": 0.9,
                    "keypoints": (_person(40 + f, 60) * [scale, scale, 1]).reshape(-1).tolist()} for f in range(n)]
    return {"images": images, "annotations": annotations}


def _write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return pattern_video(tmp_path_factory.mktemp("video") / "clip.mp4", W, H, FPS, N)


@pytest.fixture(scope="module")
def models(body_model):
    return load_perception_models(PerceptionConfig(), body_model)


CONFIG = PerceptionConfig(decode=DecodeConfig(target_fps=FPS), tracking=TrackingConfig(min_track_length=5))


def _perceive(video, sidecar, models):
    return perceive_clip(ClipRef("clip", str(video), keypoints_uri=str(sidecar)), CONFIG, models)


@pytest.mark.parametrize("field,value", [("width", -160), ("height", 0), ("width", 12.5), ("width", "160")])
def test_bad_image_sizes_are_refused_at_load(tmp_path, field, value):
    data = _coco()
    data["images"][3][field] = value
    with pytest.raises(KeypointsError) as info:
        load_keypoints(_write(tmp_path / "k.coco.json", data))
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS
    assert f"images[3].{field} = {value!r}" in info.value.message


def test_negative_width_sidecar_is_not_kept(tmp_path, video, models):
    data = _coco(width=-W)
    result = _perceive(video, _write(tmp_path / "k.coco.json", data), models)
    assert result.reject_reason == RejectReason.CORRUPT_KEYPOINTS and "width = -160" in result.message


def test_image_size_must_match_the_video(tmp_path, video, models):
    wrong = _perceive(video, _write(tmp_path / "a.coco.json", _coco(width=W, height=W)), models)
    assert wrong.reject_reason == RejectReason.CORRUPT_KEYPOINTS
    assert f"{W}x{W}" in wrong.message and f"video's {W}x{H}" in wrong.message
    # Keypoints made on a uniformly scaled copy of the video are rescaled, not refused.
    scaled = _perceive(video, _write(tmp_path / "b.coco.json", _coco(width=2 * W, height=2 * H, scale=2.0)), models)
    assert scaled.ok, scaled.message
    plain = _perceive(video, _write(tmp_path / "c.coco.json", _coco()), models)
    np.testing.assert_allclose(scaled.problems[0].keypoints, plain.problems[0].keypoints, atol=1e-3)


def test_coordinates_beyond_the_margin_name_frame_person_and_value(tmp_path, video, models):
    data = _coco()
    keypoints = np.asarray(data["annotations"][7]["keypoints"]).reshape(17, 3)
    keypoints[:, :2] *= 1e30
    data["annotations"][7]["keypoints"] = keypoints.reshape(-1).tolist()
    result = _perceive(video, _write(tmp_path / "k.coco.json", data), models)
    assert result.reject_reason == RejectReason.CORRUPT_KEYPOINTS
    assert "(frame 7)" in result.message and "e+31" in result.message and "outside" in result.message
    # Inside the documented margin is data: a wrist a little outside the frame.
    data = _coco()
    keypoints = np.asarray(data["annotations"][7]["keypoints"]).reshape(17, 3)
    keypoints[0, 0] = -0.9 * COORDINATE_MARGIN * W
    data["annotations"][7]["keypoints"] = keypoints.reshape(-1).tolist()
    assert _perceive(video, _write(tmp_path / "ok.coco.json", data), models).ok


def test_frame_ids_past_the_video(tmp_path, video, models):
    result = _perceive(video, _write(tmp_path / "k.coco.json", _coco(frame_offset=N)), models)
    assert result.reject_reason == RejectReason.CORRUPT_KEYPOINTS
    assert f"frame id {2 * N - 1}" in result.message and f"last frame {N - 1}" in result.message


def test_openpose_frame_ids_past_the_video(tmp_path, video, models):
    folder = tmp_path / "clip_openpose"
    folder.mkdir()
    for f in (0, 5, N + 40):
        body25 = np.zeros((25, 3))
        body25[keypoints_io.BODY25_TO_COCO17, :] = _person(50, 60)
        _write(folder / f"clip_{f:012d}_keypoints.json", {"people": [{"pose_keypoints_2d": body25.reshape(-1).tolist()}]})
    result = _perceive(video, folder, models)
    assert result.reject_reason == RejectReason.CORRUPT_KEYPOINTS and f"frame id {N + 40}" in result.message


def test_nesting_and_size_are_bounded_before_parsing(tmp_path, monkeypatch):
    deep = _write(tmp_path / "deep.coco.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(KeypointsError) as info:
        load_keypoints(deep)
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS and str(deep) in info.value.message
    assert "nested 100000 levels" in info.value.message
    assert json_depth('{"a": "[[[[", "b": [[1]]}') == 3
    monkeypatch.setattr(keypoints_io, "MAX_SIDECAR_BYTES", 100)
    big = _write(tmp_path / "big.coco.json", _coco())
    with pytest.raises(KeypointsError, match="more than the 100 byte bound"):
        load_keypoints(big)


def test_fifo_and_permission_errors_have_their_own_reasons(tmp_path, monkeypatch):
    fifo = tmp_path / "pipe.coco.json"
    os.mkfifo(fifo)
    with pytest.raises(KeypointsError) as info:
        load_keypoints(fifo)  # must not block reading the FIFO
    assert info.value.reason == RejectReason.CORRUPT_KEYPOINTS and "FIFO" in info.value.message
    path = _write(tmp_path / "k.coco.json", _coco())
    real_open = open

    def denied(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(KeypointsError) as info:
        load_keypoints(path)
    assert info.value.reason == RejectReason.UNREADABLE and "Permission denied" in info.value.message


def test_bom_sidecar_reads(tmp_path):
    path = tmp_path / "bom.coco.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_coco()).encode())
    assert len(load_keypoints(path).frames) == N

"""The output folder as its consumers read it: vid2mesh's reader, pyarrow/numpy, pandas,
polars, duckdb and HuggingFace `datasets`, by running the recipes of docs/schema.md (and the
vertices recipe of docs/training.md) on a multi-shard output, then checking they agree."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.reader import FrameFilter, read_frames
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

ROOT = Path(__file__).resolve().parents[2]
BODY = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "0" * 64)


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = tmp_path_factory.mktemp("consumers")
    for split, count in (("train", 6), ("val", 3)):
        folder = root / "corpus" / split / "walk"
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{split}{i}_{i:06d}_{i + 10:06d}.mp4").write_bytes(b"scripted")
    out = root / "out"
    pseudo_gt.run(["--input", str(root / "corpus"), "--output", str(out), "--keep_fraction", "0.5",
                   "--min_inlier_fraction", "0", "--clips_per_shard", "2", "--ba_batch_frames", "60"],
                  perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
    assert len(list((out / "frames").glob("*.parquet"))) >= 3  # several shards: chunked columns
    return out


def _blocks(doc: str, after: str | None = None) -> list[str]:
    text = (ROOT / "docs" / doc).read_text()
    if after is not None:
        text = text[text.index(after):]
        text = text[: text.index("\n## ", 1)] if "\n## " in text[1:] else text
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _run(code: str, output: Path) -> dict:
    namespace: dict = {}
    exec(compile(code.replace("OUTPUT_DIR", str(output)).replace("OUTPUT", str(output)), "<recipe>", "exec"), namespace)
    return namespace


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    return datasets


@pytest.mark.slow
def test_schema_recipes_run_and_agree(output, hf_cache):
    blocks = _blocks("schema.md")
    assert len(blocks) >= 7
    expected = read_frames(output, columns=["clip_id", "track_id", "frame_index"], filter=FrameFilter())
    keys = sorted(zip(*(expected.column(c).to_pylist() for c in ("clip_id", "track_id", "frame_index"))))
    assert keys
    results = [_run(block, output) for block in blocks]
    by_name = {}
    for block, ns in zip(blocks, results):
        for name in ("pandas", "polars", "duckdb", "datasets"):
            if f"import {name}" in block:
                by_name[name] = ns
    assert set(by_name) == {"pandas", "polars", "duckdb", "datasets"}
    pandas_rows = by_name["pandas"]["frames"]
    assert sorted(zip(pandas_rows.clip_id, pandas_rows.track_id, pandas_rows.frame_index)) == keys
    polars_rows = by_name["polars"]["rows"]
    assert sorted(polars_rows.select("clip_id", "track_id", "frame_index").iter_rows()) == keys
    assert polars_rows["pose"].to_numpy().shape[1:] in ((72,), ())  # fixed-size arrays survive
    duck = by_name["duckdb"]["rows"]
    assert sorted(zip(duck["clip_id"], duck["track_id"].tolist(), duck["frame_index"].tolist())) == keys
    hf = by_name["datasets"]
    assert set(hf["frames"]) == {"train", "validation"}  # HF splits follow the source split
    got = sorted(zip(hf["train"]["clip_id"], [int(t) for t in hf["train"]["track_id"]], [int(f) for f in hf["train"]["frame_index"]]))
    assert got == [k for k in keys if k[0].startswith("train")]
    assert tuple(hf["train"][0]["keypoints_2d"].shape) == (17, 3)


@pytest.mark.slow
def test_vertices_recipe(output, tmp_path, monkeypatch):
    monkeypatch.setenv("VID2MESH_CACHE", str(tmp_path / "cache"))
    (block,) = _blocks("training.md", after="## Vertices from the stored parameters")
    ns = _run(block, output)
    vertices, pixels, camera = ns["vertices"], ns["pixels"], ns["camera"]
    assert np.isfinite(vertices).all() and vertices.shape == (8, 6890, 3)
    # Pixels: s * X + tx for x, within a few frame sizes of the image.
    np.testing.assert_allclose(pixels[..., 0], camera[:8, 0, None] * vertices[..., 0] + camera[:8, 1, None], rtol=1e-4, atol=1e-2)

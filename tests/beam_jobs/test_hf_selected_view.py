"""A job's output, read by HuggingFace ``datasets`` through the card, gives exactly the
frames vid2mesh's reader selects, split by split (the scripted stages: no model)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from pipeline.dataset.reader import FrameFilter, read_frames
from test_runners import _scripted_run

datasets = pytest.importorskip("datasets")

KEY = ("clip_id", "track_id", "frame_index")
HF_SPLIT = {"train": "train", "val": "validation", "test": "test", "": "unsplit"}


def _keys(columns) -> list[tuple]:
    return sorted(zip(*(list(columns[k]) for k in KEY)))


@pytest.mark.slow
def test_card_recipe_equals_the_reader_on_a_job_output(scripted_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    datasets.disable_progress_bars()
    out = tmp_path / "out"
    _scripted_run(["--input", str(scripted_corpus), "--output", str(out), "--keep_fraction", "0.5", "--frames", "all"])
    truth = read_frames(str(out), filter=FrameFilter(selected_only=True))
    everything = read_frames(str(out), filter=FrameFilter(selected_only=False))
    assert 0 < truth.num_rows < everything.num_rows
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))  # the card's default config
    expected = {HF_SPLIT[s]: truth.filter(pc.equal(truth.column("split"), s)) for s in set(truth.column("split").to_pylist())}
    assert set(loaded) == set(expected)
    for name, part in loaded.items():
        assert _keys(part.to_dict()) == _keys(expected[name].to_pydict()), name
    # the stored column agrees: frames/ filtered on track_selected is the same set
    frames = datasets.load_dataset(str(out), "frames", cache_dir=str(tmp_path / "hf"))
    for name, part in frames.items():
        assert _keys(part.filter(lambda r: r["track_selected"]).to_dict()) == _keys(expected[name].to_pydict())

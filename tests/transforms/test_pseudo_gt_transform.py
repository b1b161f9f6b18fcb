"""The Beam layer with scripted stages: every clip accounted for, metrics, dead letters,
idempotent shards. (tests/beam_jobs runs the same wiring with the real models.)"""

from __future__ import annotations

import apache_beam as beam
import pyarrow.dataset as ds
import pytest
from apache_beam.metrics import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipeline.dataset import schema
from pipeline.perception.inputs import InputSpec, read_inputs
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.reader import FrameFilter, read_clips, read_frames, read_tracks
from pipeline.dataset.books import run_books
from pipeline.dataset.manifests import completed_clips, read_manifests
from pipeline.dataset.selection.table import read_selection_outcomes
from pipeline.dataset.writer import WriterConfig
from transforms import metrics
from transforms.bundle_adjust import fit_tracks
from transforms.perceive import PerceiveClipFn
from transforms.pipeline import JobSettings, PseudoGroundTruth, listing_bytes, plan_batches
from transforms.write import commit_input_rejections, finish_run
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception, make_problem

RUN = schema.RunMetadata(schema.BodyModelInfo("standin", "neutral", "m.pkl", "ef" * 32), {"test": True}, "vid2mesh test")
NAMES = ["a1_000001_000011", "a2_000002_000012", "a3_000003_000013", "crowded_000000_000010",
         "noperson_000000_000010", "explode_000000_000010", "diverge_000000_000010", "bafail_000000_000010"]


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "train" / "walk").mkdir(parents=True)
    for name in NAMES:
        (root / "train" / "walk" / f"{name}.mp4").write_bytes(b"scripted")
    (root / "train" / "walk" / "zero_000000_000010.mp4").write_bytes(b"")
    csv = root / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   + "".join(f"walk,{n.rsplit('_', 2)[0]},{int(n.split('_')[-2])},{int(n.split('_')[-1])},train\n" for n in NAMES)
                   + "walk,zero,0,10,train\nwalk,gone,0,10,train\nthis,is,a,bad,row\n")
    return root


def _run(listing, output, selection=SelectionConfig(mode="threshold", score="e_norm", e_norm_threshold=25.0, min_inlier_fraction=0.0),
         clips_per_shard=3, frames_mode="eligible"):
    """What the launcher does around the transform: listing, batches, input rejects, the
    pipeline, then the selection and the books (their clip counts replace the metrics')."""
    settings = JobSettings(selection, WriterConfig(str(output)), RUN, frames_mode=frames_mode, batch_max_frames=90)
    listing_path = output / "_runs" / "clips.jsonl"
    listing_path.parent.mkdir(parents=True, exist_ok=True)
    lines = listing_bytes(list(listing.clips))
    listing_path.write_bytes(b"".join(lines))
    commit_input_rejections(listing.rejected, settings.writer, RUN)
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    _ = (pipeline | beam.Create(plan_batches(str(listing_path), lines, clips_per_shard))
         | PseudoGroundTruth(ScriptedPerception(), ScriptedBundleAdjust(), settings))
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))["counters"]:
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + c.committed  # summed over steps
    finish_run(settings.writer, RUN, selection)
    expected = [c.clip_id for c in listing.clips] + [r.clip.clip_id for r in listing.rejected]
    books = run_books(expected, read_manifests(str(output)), read_selection_outcomes(str(output)))
    assert books.balanced, books.problems()
    return {**counters, **books.counters()}, result


def test_every_clip_accounted_for_and_metrics(corpus, tmp_path):
    listing = read_inputs(InputSpec(str(corpus / "train.csv"), video_root=str(corpus)))
    assert listing.num_inputs == 11
    out = tmp_path / "out"
    counters, result = _run(listing, out)
    kept = counters.get("clips_kept", 0)
    assert counters["clips_in"] == 11 == kept + counters["clips_rejected"] + counters["clips_failed"]
    assert counters["clips_crowded"] == 1 and counters["clips_no_person"] == 1
    assert counters["rejected_missing_file"] == 1 and counters["rejected_unreadable"] == 1
    assert counters["rejected_bad_input_row"] == 1 and counters["rejected_all_tracks_diverged"] == 1
    assert counters["clips_failed"] >= 1  # explode (and bafail if all its tracks failed)
    assert counters["ba_batch_retries"] >= 1 and counters["tracks_failed"] >= 1
    dist = result.metrics().query(MetricsFilter().with_name("ba_iterations"))["distributions"][0].committed
    assert dist.count == counters["tracks_fitted"] and dist.min == 17
    assert result.metrics().query(MetricsFilter().with_name("ms_perceive"))["distributions"][0].committed.count == 9  # all but the one that raised

    assert counters["shards_written"] >= 3  # committed batch by batch, not once at the end
    tracks = read_tracks(out)
    clips = read_clips(out)
    rejected = ds.dataset(out / "rejected", format="parquet").to_table()
    kept_ids = set(tracks.filter(tracks["selected"]).column("clip_id").to_pylist())
    ledger = dict(zip(clips.column("clip_id").to_pylist(), clips.column("outcome").to_pylist()))
    assert len(ledger) == 11 and {c for c, o in ledger.items() if o == "kept"} == kept_ids and len(kept_ids) == kept
    rejected_ids = [c for c, o in ledger.items() if o != "kept"]
    assert set(rejected.column("clip_id").to_pylist()) <= set(rejected_ids)  # + no_track_selected, decided at the end
    committed = ds.dataset(out / "frames", format="parquet").to_table()
    assert committed.num_rows == counters["frames_written"]
    assert set(read_frames(out, columns=["clip_id"], filter=FrameFilter()).column("clip_id").to_pylist()) == kept_ids
    reasons = dict(zip(clips.column("clip_id").to_pylist(), clips.column("reason").to_pylist()))
    assert reasons["crowded_000000_000010"] == RejectReason.CROWDED
    assert reasons["explode_000000_000010"] == RejectReason.FAILED
    messages = dict(zip(rejected.column("clip_id").to_pylist(), rejected.column("message").to_pylist()))
    assert "scripted failure" in messages["explode_000000_000010"]
    assert set(completed_clips(str(out))) == kept_ids | set(rejected_ids)
    assert counters.get("rejected_no_track_selected", 0) == sum(r == RejectReason.NO_TRACK_SELECTED for r in reasons.values())

    # The same clips again into the same output: identical files, nothing duplicated.
    before = {p: p.read_bytes() for p in out.rglob("*.parquet")}
    _run(listing, out)
    assert {p: p.read_bytes() for p in out.rglob("*.parquet")} == before


def _perceive(clips, stage):
    """(clip id, outcome or "perceived", reason or track count) of each element PerceiveClipFn yields."""
    def summary(item):
        if isinstance(item, PerceptionResult):
            return item.clip.clip_id, "perceived", len(item.problems)
        return item.clip_id, item.outcome, item.reason

    return beam.Create(clips) | beam.ParDo(PerceiveClipFn(stage)) | beam.Map(summary)


def test_perceive_fn_gives_one_element_per_clip_with_a_dead_letter(corpus):
    clips = [ClipRef(n, str(corpus / "train" / "walk" / f"{n}.mp4")) for n in ("a1_000001_000011", "crowded_000000_000010", "explode_000000_000010")]
    tracks = len(ScriptedPerception()(clips[0]).problems)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        assert_that(p | _perceive(clips, ScriptedPerception()),
                    equal_to([("a1_000001_000011", "perceived", tracks),
                              ("crowded_000000_000010", "rejected", "crowded"),
                              ("explode_000000_000010", "failed", "failed")]))


def test_precomputed_keypoints_source_rejects_clips_without_files(corpus):
    clip = ClipRef("a1_000001_000011", str(corpus / "train" / "walk" / "a1_000001_000011.mp4"))
    with beam.Pipeline(runner=FnApiRunner()) as p:
        assert_that(p | _perceive([clip], ScriptedPerception(keypoints_source="precomputed")),
                    equal_to([("a1_000001_000011", "rejected", RejectReason.MISSING_KEYPOINTS)]))


def test_fit_tracks_isolates_failures():
    stage = ScriptedBundleAdjust()
    problems = [make_problem("bafail_000000_000010", t, 10, t) for t in range(2)] + [make_problem("ok_000000_000010", 0, 10, 5)]
    bad = make_problem("bad_000000_000010", 0, 10, 6)
    bad = bad.replace(keypoints=bad.keypoints[:, :5])
    fits = fit_tracks(stage, problems + [bad])
    assert [f.status for f in fits] == ["failed", "ok", "ok", "failed"]
    assert "scripted track failure" in fits[0].message and "invalid track problem" in fits[3].message
    assert stage.calls == [3, 1, 1, 1]  # the batch, then each valid track alone


def test_fraction_selection_over_the_run(corpus, tmp_path):
    listing = read_inputs(InputSpec(str(corpus / "train" / "walk" / "a*.mp4")))
    out = tmp_path / "out"
    counters, _ = _run(listing, out, SelectionConfig(mode="fraction", keep_fraction=0.34, min_inlier_fraction=0.0),
                       frames_mode="all")
    tracks = read_tracks(out).to_pylist()
    eligible = sorted(t["selection_score"] for t in tracks)
    assert sum(t["selected"] for t in tracks) == counters["tracks_selected"] == -(-len(eligible) * 34 // 100)
    threshold = {t["e_norm_threshold"] for t in tracks}
    assert len(threshold) == 1 and threshold.pop() == eligible[counters["tracks_selected"] - 1]
    frames = read_frames(out)
    assert frames.num_rows == sum(t["num_frames"] for t in tracks)  # --frames all
    assert set(frames.column("track_selected").to_pylist()) == {True, False}

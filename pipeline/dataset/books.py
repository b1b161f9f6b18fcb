"""The end-of-run accounting: every clip a run took in ends in exactly one place.

The job's invariant is ``clips in = kept + rejected + failed``. It is checked from what the
run committed (the shard manifests it wrote and the selection over the whole output), not
from runner metrics: a runner may report no metrics (the DaskRunner) or drop elements, and
only the committed rows are what the readers of the dataset see.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.dataset.selection.rules import TrackReason

SHOWN_IDS = 10


@dataclass(frozen=True)
class TrackVerdicts:
    """Where the track rows of some clips ended: the one set of track counts.

    Every row of ``tracks/`` is one of: kept (selected), split (cut at identity switches;
    its pieces are rows of their own, counted here too) or rejected with a reason (the
    track's ``selection_reason``: ``too_short``, ``diverged``, ``below_best_fraction`` ...).
    The per-clip log line, the run summary and ``stats.json`` all count with this class, so
    ``total = kept + split + sum(rejected_by_reason)`` everywhere.

    Attributes:
        kept: rows the selection kept.
        split: rows of tracks cut into pieces.
        rejected_by_reason: reason -> rejected rows (sorted by reason).
        undecided: rows still waiting for the selection (only in a per-clip line written
            before the selection runs, under the reason ``eligible``).
    """

    kept: int = 0
    split: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    undecided: int = 0

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def total(self) -> int:
        return self.kept + self.split + self.rejected + self.undecided

    def line(self) -> str:
        """``9 tracks: 2 kept, 1 split, 6 rejected (below_best_fraction 4, too_short 2)``."""
        reasons = ", ".join(f"{r} {n}" for r, n in self.rejected_by_reason.items())
        parts = [f"{self.kept} kept"] if not self.undecided else [f"{self.undecided} wait for the selection"]
        parts += [f"{self.split} split", f"{self.rejected} rejected" + (f" ({reasons})" if reasons else "")]
        return f"{self.total} tracks: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"tracks": self.total, "kept": self.kept, "split": self.split, "rejected": self.rejected,
                "rejected_by_reason": dict(self.rejected_by_reason)}


def count_track_verdicts(reasons: Iterable[str], undecided: str | None = None) -> TrackVerdicts:
    """Count track rows by their ``selection_reason``.

    Args:
        reasons: one ``selection_reason`` a track row.
        undecided: the reason that marks a row the selection has yet to decide (the commit's
            ``eligible``); None: every row is decided.
    """
    counts = Counter(reasons)
    kept, split, waiting = counts.pop(TrackReason.SELECTED, 0), counts.pop(TrackReason.SPLIT, 0), counts.pop(undecided, 0) if undecided else 0
    return TrackVerdicts(kept=kept, split=split, rejected_by_reason=dict(sorted(counts.items())), undecided=waiting)


@dataclass(frozen=True)
class RunBooks:
    """Where the clips of one run ended, from the committed manifests and the selection.

    Attributes:
        clips_in: clips the run took in (its listing, bad input rows included).
        kept, rejected, failed: clips in each final outcome (each clip counted once).
        rejected_by_reason: reason -> rejected clips of this run.
        tracks, tracks_selected: committed tracks of this run's clips (failed fits
            included); of those, selected.
        frames_written: frame rows this run's clips hold.
        inlier_frames: inlier frames of the selected tracks of this run's clips.
        track_verdicts: where the track rows of this run's clips ended (from the selection's
            ``tracks.parquet``; empty when no selection ran).
        missing: ids of clips the run took in that no shard of the run committed (lost).
        doubled: ids of clips that more than one shard of the run committed.
        unexpected: ids committed by the run's shards that the run did not take in.
    """

    clips_in: int
    kept: int = 0
    rejected: int = 0
    failed: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    tracks: int = 0
    tracks_selected: int = 0
    frames_written: int = 0
    inlier_frames: int = 0
    track_verdicts: TrackVerdicts = field(default_factory=TrackVerdicts)
    missing: tuple[str, ...] = ()
    doubled: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()

    @property
    def balanced(self) -> bool:
        """clips in = kept + rejected + failed, with no clip lost, doubled or unexpected."""
        return (not self.missing and not self.doubled and not self.unexpected
                and self.clips_in == self.kept + self.rejected + self.failed)

    def problems(self) -> str:
        """One line naming what does not add up (empty when the books balance)."""
        if self.balanced:
            return ""
        parts = [f"clips in {self.clips_in} != kept {self.kept} + rejected {self.rejected} + failed {self.failed}"]
        for name, ids in (("lost (never committed)", self.missing), ("committed more than once", self.doubled),
                          ("committed but not in this run's input", self.unexpected)):
            if ids:
                shown = ", ".join(ids[:SHOWN_IDS]) + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")
                parts.append(f"{len(ids)} clips {name}: {shown}")
        return "; ".join(parts)

    def counters(self) -> dict[str, int]:
        """The books as the job's counter names (``clips_kept``, ``rejected_<reason>`` ...)."""
        out = {"clips_in": self.clips_in, "clips_kept": self.kept, "clips_rejected": self.rejected,
               "clips_failed": self.failed, "tracks_selected": self.tracks_selected, "frames_written": self.frames_written,
               "inlier_frames": self.inlier_frames}
        out.update({f"rejected_{reason}": n for reason, n in self.rejected_by_reason.items()})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"clips_in": self.clips_in, "clips_kept": self.kept, "clips_rejected": self.rejected,
                "clips_failed": self.failed, "rejected_by_reason": dict(self.rejected_by_reason),
                "tracks": self.tracks, "tracks_selected": self.tracks_selected,
                "frames_written": self.frames_written, "inlier_frames": self.inlier_frames,
                "track_verdicts": self.track_verdicts.to_json(), "balanced": self.balanced, "missing": list(self.missing), "doubled": list(self.doubled),
                "unexpected": list(self.unexpected)}


def run_books(
    expected: Collection[str],
    run_manifests: Iterable[Mapping[str, Any]],
    final: Mapping[str, Mapping[str, Any]] | None = None,
    track_reasons: Mapping[str, Iterable[str]] | None = None,
) -> RunBooks:
    """Close the books of one run.

    Args:
        expected: ids of the clips the run took in.
        run_manifests: the manifests of the shards this run committed (``{"shard", "clips":
            {clip_id: {"outcome", "reason", "tracks", "frames", ...}}}``).
        final: clip id -> the selection's final entry (``outcome``, ``reason``,
            ``selected_tracks``, ``inlier_frames``); a committed ``pending`` clip takes its
            outcome from here.
        track_reasons: clip id -> the ``selection_reason`` of each of its track rows (the
            selection's ``tracks.parquet``); None: no selection ran.
    """
    final = final or {}
    seen: Counter[str] = Counter()
    entries: dict[str, Mapping[str, Any]] = {}
    for manifest in run_manifests:
        for clip_id, entry in manifest["clips"].items():
            seen[clip_id] += 1
            entries.setdefault(clip_id, entry)
    wanted = set(expected)
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    tracks = selected = frames = inliers = 0
    for clip_id in sorted(wanted & entries.keys()):
        entry = {**entries[clip_id], **final.get(clip_id, {})}
        outcome = entry["outcome"]
        if outcome == "pending":  # no selection ran over it: not kept
            outcome, entry = "rejected", {**entry, "reason": entry.get("reason") or "not_selected"}
        outcomes[outcome] += 1
        if outcome == "rejected":
            reasons[str(entry.get("reason"))] += 1
        tracks += int(entry.get("tracks") or 0)
        selected += int(entry.get("selected_tracks") or 0)
        frames += int(entry.get("frames") or 0)
        inliers += int(entry.get("inlier_frames") or 0)
    return RunBooks(
        clips_in=len(wanted), kept=outcomes["kept"], rejected=outcomes["rejected"], failed=outcomes["failed"],
        rejected_by_reason=dict(sorted(reasons.items())), tracks=tracks, tracks_selected=selected,
        frames_written=frames, inlier_frames=inliers,
        track_verdicts=count_track_verdicts(r for k in sorted(wanted) for r in (track_reasons or {}).get(k, ())),
        missing=tuple(sorted(wanted - entries.keys())),
        doubled=tuple(sorted(k for k, n in seen.items() if n > 1)),
        unexpected=tuple(sorted(entries.keys() - wanted)),
    )

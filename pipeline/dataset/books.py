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

SHOWN_IDS = 10


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
                "balanced": self.balanced, "missing": list(self.missing), "doubled": list(self.doubled),
                "unexpected": list(self.unexpected)}


def run_books(
    expected: Collection[str],
    run_manifests: Iterable[Mapping[str, Any]],
    final: Mapping[str, Mapping[str, Any]] | None = None,
) -> RunBooks:
    """Close the books of one run.

    Args:
        expected: ids of the clips the run took in.
        run_manifests: the manifests of the shards this run committed (``{"shard", "clips":
            {clip_id: {"outcome", "reason", "tracks", "frames", ...}}}``).
        final: clip id -> the selection's final entry (``outcome``, ``reason``,
            ``selected_tracks``, ``inlier_frames``); a committed ``pending`` clip takes its
            outcome from here.
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
        missing=tuple(sorted(wanted - entries.keys())),
        doubled=tuple(sorted(k for k, n in seen.items() if n > 1)),
        unexpected=tuple(sorted(entries.keys() - wanted)),
    )

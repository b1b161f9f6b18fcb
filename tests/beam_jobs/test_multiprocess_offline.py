"""A multi-process local run (`--direct_running_mode multi_processing`) inside a network
namespace with no connectivity but loopback: proves the local default downloads nothing
(no Prism) and that the worker processes get the job's stages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent("""
    import json, sys
    from beam_jobs import pseudo_gt
    from pipeline.dataset import schema
    from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception
    report = pseudo_gt.run(sys.argv[1:], perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(),
                           body_model=schema.BodyModelInfo("standin", "neutral", "m.pkl", "0" * 64))
    print("REPORT " + json.dumps({"state": report.state, "counters": report.counters, "stats": report.stats}))
""")


def _offline_prefix() -> list[str] | None:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return None
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True)
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"] if probe.returncode == 0 else None


@pytest.mark.slow
def test_multiprocess_local_run_offline(tmp_path):
    prefix = _offline_prefix()
    if prefix is None:
        pytest.skip("unshare -rn (user + network namespaces) is not available here")
    folder = tmp_path / "corpus" / "train" / "walk"
    folder.mkdir(parents=True)
    names = ["a1_000001_000011", "a2_000002_000012", "a3_000003_000013", "crowded_000000_000010", "explode_000000_000010"]
    for name in names:
        (folder / f"{name}.mp4").write_bytes(b"scripted")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    command = prefix + [sys.executable, str(driver), "--input", str(tmp_path / "corpus"), "--output", str(tmp_path / "out"),
                        "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    import json

    report = json.loads(lines[-1][len("REPORT "):])
    c = report["counters"]
    assert report["state"] == "DONE"
    assert c["clips_in"] == 5 == c.get("clips_kept", 0) + c.get("clips_rejected", 0) + c.get("clips_failed", 0)
    assert report["stats"]["clips"] == 5 and c["rejected_crowded"] == 1 and c["clips_failed"] == 1
    assert "prism" not in (result.stdout + result.stderr).lower()

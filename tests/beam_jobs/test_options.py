"""Strict flags: every numeric flag is type- and range-checked at start-up, and
the JSON config overrides are checked before any model file is touched."""

from __future__ import annotations

import argparse

import pytest

from beam_jobs import pseudo_gt
from beam_jobs.flags import ADDERS
from beam_jobs.options import FLAG_RANGES


def test_every_numeric_flag_has_a_range():
    parser = argparse.ArgumentParser(add_help=False)
    for add in ADDERS:
        add(parser)
    numeric = sorted(a.dest for a in parser._actions if a.type in (int, float))
    missing = [d for d in numeric if d not in FLAG_RANGES]
    assert not missing, f"numeric flags without a range: {missing}; add e.g. " + ", ".join(
        f'"{d}": integer(ge=1)' for d in missing) + " to FLAG_RANGES in beam_jobs/options.py"


@pytest.mark.parametrize("argv,expected", [
    (["--ba_config", '{"max_iter": 1.5}'], "BAConfig.max_iter=1.5 (float): must be an integer >= 1"),
    (["--ba_config", '{"max_iter": true}'], "BAConfig.max_iter=True (bool): must be an integer >= 1"),
    (["--ba_config", '{"max_iter": "3"}'], "BAConfig.max_iter='3' (str): must be an integer >= 1"),
    (["--clips_per_shard", "0"], "--clips_per_shard 0: must be an integer >= 1"),
    (["--ba_batch_frames", "0"], "--ba_batch_frames 0: must be an integer >= 1"),
    (["--min_track_frames", "-1"], "--min_track_frames -1: must be an integer >= 1"),
    (["--limit", "-1"], "--limit -1: must be an integer >= 0"),
    (["--keep_fraction", "1.5"], "--keep_fraction 1.5: must be a finite number in (0, 1]"),
    (["--perception_config", '{"decode": {"timeout_s": -1}}'], "DecodeConfig.timeout_s=-1 (int): must be a finite number > 0"),
    (["--perception_config", '{"tracking": {"max_people": 0}}'], "TrackingConfig.max_people=0 (int): must be an integer >= 1"),
])
def test_bad_flags_stop_the_launcher_with_one_clear_line(argv, expected, tmp_path, capsys):
    code = pseudo_gt.main(["--input", str(tmp_path / "x.mp4"), "--output", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err and "not supported between" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("flag", ["--perception_config", "--ba_config"])
@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_json_flags_are_one_line_naming_the_flag(flag, depth, tmp_path, capsys):
    text = "[" * depth + "]" * depth if depth > 1000 else '{"a": ' * depth + "1" + "}" * depth
    with pytest.raises(SystemExit) as info:
        pseudo_gt.main(["--input", str(tmp_path / "x.mp4"), "--output", str(tmp_path / "out"), flag, text])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "RecursionError" not in err and "Traceback" not in err, err
    (line,) = [e for e in err.splitlines() if "error:" in e]
    assert f"argument {flag}: JSON nested {depth} levels deep" in line and len(line) < 300, line

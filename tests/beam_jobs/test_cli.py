"""The CLI a new user meets: defaults in every help, one flag style, help examples that work,
look-alike flags refused, no GCP import noise."""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from beam_jobs.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_flag_shows_its_default_and_is_snake_case():
    for name, command in _commands().items():
        for action in command._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            shown = " ".join(action.option_strings)
            assert "default" in (action.help or "").lower() or "(required)" in (action.help or ""), f"{name} {shown}: {action.help!r}"
            for option in action.option_strings:
                assert not (option.startswith("--") and "-" in option[2:]), f"{name}: {option} is not snake_case"
        text = command.format_help()
        assert not re.search(r"--[a-z]+-[a-z]", text.replace("--frames all", "")), f"{name} help shows a kebab-case flag"


def test_old_kebab_spellings_still_parse():
    parser = build_parser()
    args = parser.parse_args(["synth", "--out", "o", "--clips", "1", "--body-model", "b.pkl", "--contact-sheet", "s.png"])
    assert (args.body_model, args.contact_sheet) == ("b.pkl", "s.png")
    args = parser.parse_args(["evaluate", "--corpus", "c", "--baseline", "--inliers-only", "--match-threshold", "0.3",
                              "--pck-threshold", "0.2"])
    assert (args.inliers_only, args.match_threshold, args.pck_threshold) == (True, 0.3, 0.2)
    args = parser.parse_args(["synth", "--out", "o", "--clips", "1", "--body_model", "b.pkl"])
    assert args.body_model == "b.pkl"


def _json_examples(help_text: str) -> list[str]:
    return re.findall(r"e\.g\. '(\{.*?\})'(?=[ )]|$)", " ".join(help_text.split()))


@pytest.mark.slow
def test_help_examples_run():
    """Every JSON example of a help text parses with its flag and builds its config."""
    from optimize.config import BAConfig
    from pipeline.perception.perceive import PerceptionConfig
    from transforms.model_stages import build_dataclass

    classes = {"perception_config": PerceptionConfig, "ba_config": BAConfig}
    run = _commands()["run"]
    seen = set()
    for action in run._actions:
        for example in _json_examples(action.help or ""):
            args, _ = run.parse_known_args(["--input", "x", "--output", "y", action.option_strings[0], example])
            value = getattr(args, action.dest)
            assert value == json.loads(example)
            build_dataclass(classes[action.dest], value, action.option_strings[0])  # raises on a bad example
            seen.add(action.dest)
    assert seen == set(classes)


def test_lookalike_flags_are_refused_with_the_suggestion(tmp_path, capsys):
    code = main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--keep-fraction", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown flag --keep-fraction: did you mean --keep_fraction?" in err
    code = main(["run", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--keep_fractoin", "0.5"])
    assert code == 2 and "did you mean --keep_fraction?" in capsys.readouterr().err
    from beam_jobs import pseudo_gt

    with pytest.raises(ValueError, match="did you mean --selection_threshold"):
        pseudo_gt.run(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--selection-threshold", "3"])
    pseudo_gt.check_flags(["--runner", "DirectRunner", "--direct_num_workers", "2", "--project", "p"])  # Beam's pass


def test_the_deprecated_e_norm_threshold_flag_still_works_with_one_warning(tmp_path, caplog):
    """--e_norm_threshold is the old name of --selection_threshold: the same bound, recorded
    in the run's config, and one warning per run naming the new flag."""
    from beam_jobs import pseudo_gt
    from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception
    from pipeline.dataset import schema
    from pipeline.dataset.selection import rules

    corpus = tmp_path / "corpus" / "train" / "walk"
    corpus.mkdir(parents=True)
    (corpus / "a1_000001_000011.mp4").write_bytes(b"scripted")
    body = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "0" * 64)

    def dry_run(*flags: str):
        argv = ["--input", str(tmp_path / "corpus"), "--output", str(tmp_path / "out"), "--dry_run", *flags]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=rules.logger.name):
            report = pseudo_gt.run(argv, perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=body)
        warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
        return report, warnings

    _, warnings = dry_run("--selection_threshold", "30")
    assert warnings == []
    report, warnings = dry_run("--e_norm_threshold", "30")
    assert report.state == "DRY_RUN" and len(warnings) == 1 and "--selection_threshold 30" in warnings[0]
    optim = pseudo_gt.OptimisationOptions(["--e_norm_threshold", "30"])
    assert pseudo_gt.selection_config(optim) == rules.SelectionConfig(mode="threshold", e_norm_threshold=30.0)
    with pytest.raises(ValueError, match="pass only --selection_threshold"):
        dry_run("--e_norm_threshold", "30", "--selection_threshold", "40")


@pytest.mark.slow
def test_no_gcp_import_noise_in_the_entry_points(tmp_path):
    """`vid2mesh run` (which imports Beam) prints no apitools / bigquery note."""
    result = subprocess.run([sys.executable, "-m", "beam_jobs.cli", "run", "--input", str(tmp_path / "none"),
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    text = result.stdout + result.stderr
    assert result.returncode == 2 and "error" in text
    assert "apitools" not in text and "bigquery_storage" not in text, text[-2000:]


def test_gcp_import_notes_are_dropped_whatever_is_installed(capsys):
    """The filter itself, for launchers with or without apache-beam[gcp] (with it, Beam
    does not log the notes at all)."""
    import logging

    from beam_jobs.logs import setup_logging

    setup_logging()
    logging.getLogger().warning("apitools not found, and bigquery client libraries are not available despite ...")
    logging.getLogger("apache_beam.io.gcp.bigquery").warning("No module named google.cloud.bigquery_storage_v1. As a result ...")
    logging.getLogger("vid2mesh.run").warning("a real warning")
    out = capsys.readouterr()
    text = out.out + out.err
    assert "apitools" not in text and "bigquery_storage_v1" not in text

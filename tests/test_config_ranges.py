"""Strict options: every field of every config dataclass has a declared type and
range (optimize.validate), and a bad value of any of them fails with the class, field, value
and allowed range, never with Python's own exception text."""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest

from optimize.config import BAConfig
from optimize.validate import declared_ranges, missing_ranges, registered_classes
from pipeline.perception.crops import CropConfig
from pipeline.perception.decode import DecodeConfig
from pipeline.perception.perceive import PerceptionConfig
from pipeline.perception.track import TrackingConfig
from transforms.model_stages import build_dataclass

CONFIGS = [BAConfig, PerceptionConfig, DecodeConfig, TrackingConfig, CropConfig]


def _table_name(cls) -> str:
    module = sys.modules[cls.__module__]
    table = declared_ranges(cls)
    for name, value in vars(module).items():
        if isinstance(value, dict) and value and value == table:
            return f"{name} in {module.__file__.split('/')[-2]}/{module.__file__.split('/')[-1]}"
    return f"a declare_ranges({cls.__name__}, {{...}}) table next to the class in {cls.__module__}"


@pytest.mark.parametrize("cls", sorted(set(CONFIGS) | set(registered_classes()), key=lambda c: c.__name__))
def test_every_field_has_a_declared_range(cls):
    missing = missing_ranges(cls)
    assert not missing, (
        f"{cls.__name__} fields without a declared type/range: {missing}. Add an entry per field to "
        f"{_table_name(cls)}, e.g. " + ", ".join(f'"{m}": real(ge=0)' for m in missing)
        + " (or integer(ge=1), boolean(), choice(...), text(optional=True), sequence(real(gt=0)); see optimize/validate.py)"
    )


def _bad_values(rule) -> list:
    """Values the rule must refuse: wrong types, then just outside each bound."""
    if rule.kind == "bool":
        return [1, "true", None]
    if rule.kind == "choice":
        return ["bogus", 3, None]
    if rule.kind == "text":
        return [5] + ([] if rule.optional else [None])
    if rule.kind == "sequence":
        return ["x", [], ["x"], [-1.0, 1.0] if rule.item.kind == "real" else [object()]]
    bad = ["3", True, [1]] + ([] if rule.optional else [None])
    if rule.kind == "int":
        bad.append(1.5)
    else:
        bad += [math.nan, math.inf]
    step = 1 if rule.kind == "int" else 1e-6
    if rule.ge is not None:
        bad.append(rule.ge - step)
    if rule.gt is not None:
        bad.append(rule.gt)
    if rule.le is not None:
        bad.append(rule.le + step)
    if rule.lt is not None:
        bad.append(rule.lt)
    return bad


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_refuses_bad_values_with_field_value_and_range(cls):
    cls()  # the defaults pass
    for name, rule in declared_ranges(cls).items():
        for bad in _bad_values(rule):
            with pytest.raises(ValueError) as info:
                build_dataclass(cls, {name: bad}, "--flag")
            message = str(info.value)
            shown = tuple(bad) if isinstance(bad, list) else bad  # JSON lists arrive as tuples
            assert message.startswith(f"--flag: {cls.__name__}.{name}={shown!r} ("), message
            assert message.endswith(f": must be {rule.describe()}"), message
            for leak in ("not supported between", "object of type", "unexpected keyword", "Traceback"):
                assert leak not in message


def test_nested_configs_are_walked():
    with pytest.raises(ValueError, match=r"DecodeConfig\.timeout_s=-1 \(int\): must be a finite number > 0"):
        build_dataclass(PerceptionConfig, {"decode": {"timeout_s": -1}}, "--perception_config")
    with pytest.raises(ValueError, match=r"PerceptionConfig\.tracking=5 \(int\): must be an object of TrackingConfig"):
        build_dataclass(PerceptionConfig, {"tracking": 5}, "--perception_config")
    config = build_dataclass(PerceptionConfig, {"tracking": {"max_people": None}, "crop": {"size": 64}}, "x")
    assert config.tracking.max_people is None and config.crop.size == 64
    assert dataclasses.replace(BAConfig(), max_iter=7).max_iter == 7

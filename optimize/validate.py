"""Type and range checks of configuration dataclasses, declared per field, run by one walker.

Each config class declares, next to its definition, a table field name -> :class:`Range`
and registers it with :func:`declare_ranges`; its ``__post_init__`` calls
:func:`validate_fields`. A bad value raises ``ValueError`` naming the class, the field, the
value and what is allowed (``BAConfig.max_iter=1.5 (float): must be an integer >= 1``), so a
JSON override from the command line fails on the launcher with that line and never with
Python's own exception text. Fields whose value is itself a dataclass are walked by that
class's own ``__post_init__``; they need no entry.

Adding a field to a config: add its entry to the class's table, e.g.
``"max_iter": integer(ge=1)``, ``"w_prior": real(ge=0)``, ``"mode": choice("a", "b")``,
``"weights_path": text(optional=True)``; ``tests/optimize/test_validate.py`` walks every
field of every registered class and names the missing ones.

Lives in ``optimize`` (below ``pipeline``) so that both the bundle-adjustment config and
the perception configs can use it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Range",
    "boolean",
    "choice",
    "declare_ranges",
    "declared_ranges",
    "integer",
    "missing_ranges",
    "real",
    "registered_classes",
    "sequence",
    "text",
    "validate_fields",
]


@dataclass(frozen=True)
class Range:
    """What one field accepts.

    Attributes:
        kind: "int", "real", "bool", "choice", "text" or "sequence".
        ge, gt, le, lt: inclusive / exclusive bounds of numbers (None: unbounded).
        choices: the allowed values of a "choice".
        optional: None is allowed too.
        item: the Range of each element of a "sequence".
        min_len: fewest elements of a "sequence".
    """

    kind: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple = ()
    optional: bool = False
    item: "Range | None" = None
    min_len: int = 0

    def describe(self) -> str:
        """The allowed values in words ("an integer >= 1", "a number in [0, 1]")."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "text":
            text = "a string"
        elif self.kind == "sequence":
            text = f"a list of at least {self.min_len} elements, each {self.item.describe()}"
        else:
            text = ("an integer" if self.kind == "int" else "a finite number") + self._bounds()
        return text + (" (or null)" if self.optional else "")

    def _bounds(self) -> str:
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(") if self.gt is not None else None
        high = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if low and high:
            return f" in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
        if low:
            return f" {'>=' if low[1] == '[' else '>'} {low[0]:g}"
        if high:
            return f" {'<=' if high[1] == ']' else '<'} {high[0]:g}"
        return ""

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if self.kind == "text":
            return isinstance(value, str)
        if self.kind == "sequence":
            return (
                isinstance(value, Sequence) and not isinstance(value, str) and len(value) >= self.min_len
                and all(self.item.accepts(v) for v in value)
            )
        if isinstance(value, bool):  # True is an Integral in Python; never a number here
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        if self.kind == "real" and not isinstance(value, numbers.Real):
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        return not (
            (self.ge is not None and number < self.ge) or (self.gt is not None and number <= self.gt)
            or (self.le is not None and number > self.le) or (self.lt is not None and number >= self.lt)
        )


def integer(ge: float | None = None, le: float | None = None, optional: bool = False) -> Range:
    """An int (not a bool, not 1.5) within [ge, le]."""
    return Range("int", ge=ge, le=le, optional=optional)


def real(ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
         optional: bool = False) -> Range:
    """A finite int or float (not a bool) within the bounds."""
    return Range("real", ge=ge, gt=gt, le=le, lt=lt, optional=optional)


def boolean() -> Range:
    return Range("bool")


def choice(*values) -> Range:
    return Range("choice", choices=tuple(values))


def text(optional: bool = False) -> Range:
    return Range("text", optional=optional)


def sequence(item: Range, min_len: int = 1) -> Range:
    return Range("sequence", item=item, min_len=min_len)


_REGISTRY: dict[type, dict[str, Range]] = {}


def declare_ranges(cls: type, ranges: dict[str, Range]) -> dict[str, Range]:
    """Register the table of ``cls`` (call once, after the class); returns it."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(ranges) - names)
    if unknown:
        raise TypeError(f"ranges declared for {cls.__name__} name no field: {unknown}")
    _REGISTRY[cls] = dict(ranges)
    return _REGISTRY[cls]


def declared_ranges(cls: type) -> dict[str, Range]:
    return dict(_REGISTRY.get(cls, {}))


def registered_classes() -> list[type]:
    return list(_REGISTRY)


def missing_ranges(cls: type) -> list[str]:
    """Fields of ``cls`` with neither a declared Range nor a dataclass value (the test's list)."""
    table = _REGISTRY.get(cls, {})
    missing = []
    instance_defaults = {}
    for f in dataclasses.fields(cls):
        if f.name in table:
            continue
        if f.default_factory is not dataclasses.MISSING:
            instance_defaults[f.name] = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            instance_defaults[f.name] = f.default
        if dataclasses.is_dataclass(instance_defaults.get(f.name)):
            continue
        missing.append(f.name)
    return missing


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def validate_fields(obj: Any) -> None:
    """Check every declared field of the dataclass instance ``obj``.

    A field whose default is a dataclass must hold an instance of that class (its own
    ``__post_init__`` checks it). Undeclared fields are not checked here (the test suite
    fails on them instead, so a new field cannot ship unchecked).

    Raises:
        ValueError: ``<Class>.<field>=<value> (<type>): must be <allowed>``.
    """
    cls = type(obj)
    table = _REGISTRY.get(cls, {})
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        rule = table.get(f.name)
        if rule is None:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default) and not isinstance(value, type(default)):
                raise ValueError(
                    f"{cls.__name__}.{f.name}={_show(value)}: must be an object of {type(default).__name__} "
                    f"fields, e.g. {{}} for the defaults"
                )
            continue
        if not rule.accepts(value):
            raise ValueError(f"{cls.__name__}.{f.name}={_show(value)}: must be {rule.describe()}")

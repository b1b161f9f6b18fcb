"""``docs/schema.md`` generated from :mod:`pipeline.dataset.schema`.

The column tables and the field-metadata note of ``docs/schema.md`` are generated from the
schema's :class:`~pipeline.dataset.schema.Column` lists, the same source the Parquet
files' field metadata comes from. Each generated block sits between two markers::

    <!-- generated: columns frames -->
    ...
    <!-- end generated -->

(``columns <dataset>`` for a dataset's table, ``columns crops`` for the optional crop
column, ``version`` for the schema version line); the prose around them is kept as it is.

Regenerate: ``python -m pipeline.dataset.schema_doc`` (``--check``: exit 1 when the
committed file differs; a test runs the check).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pipeline.dataset import schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
_BLOCK = re.compile(r"(<!-- generated: (?P<what>[a-z_ ]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def block(what: str) -> str:
    """The generated text of one marker (``columns <dataset>``, ``columns crops``, ``version``)."""
    kind, _, arg = what.partition(" ")
    if kind == "version":
        return f"Schema version {schema.SCHEMA_VERSION}.\n"
    if kind == "columns" and arg == "crops":
        return schema.markdown_table_of((schema.CROP_COLUMN,)) + "\n"
    if kind == "columns" and arg in schema.DATASETS:
        return schema.markdown_table(arg) + "\n"
    raise ValueError(f"docs/schema.md: unknown generated block {what!r}: use 'version', 'columns crops' or "
                     f"'columns <dataset>' with a dataset of {schema.DATASETS}")


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    return _BLOCK.sub(lambda m: m.group(1) + block(m.group("what").strip()) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate the generated blocks of docs/schema.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/schema.md is out of date, write nothing")
    parser.add_argument("--path", default=str(DOC), help="the file (default: docs/schema.md of this checkout)")
    args = parser.parse_args(argv)
    path = Path(args.path)
    text = path.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{path} is out of date: run python -m pipeline.dataset.schema_doc", file=sys.stderr)
            return 1
        return 0
    if new != text:
        path.write_text(new)
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

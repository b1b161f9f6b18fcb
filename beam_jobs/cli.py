"""The ``vid2mesh`` console script.

It lives in ``beam_jobs`` (the top layer) because ``vid2mesh run`` launches the Beam job;
every other subcommand is defined next to the code it drives, in a module exposing
``register(subparsers)``, and is imported only when the CLI starts (never Beam unless
``run`` is asked for: the run command's module imports Beam lazily too).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from beam_jobs.logs import setup_logging

# Modules that each add their subcommands to the parser (see module docstrings).
COMMAND_MODULES = (
    "pipeline.commands.models",  # convert-smpl, make-body-model, fit-prior
    "pipeline.commands.synth",  # synth, evaluate
    "pipeline.commands.dataset",  # render, report
    "beam_jobs.commands",  # run
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vid2mesh",
        description="Pseudo-ground-truth 3D human meshes from short video clips.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    for command in sub.choices.values():
        polish(command)
    return parser


def polish(parser: argparse.ArgumentParser) -> None:
    """One flag style and visible defaults across the subcommands.

    * snake_case flags (as Beam's and ``run``'s): a kebab-case flag (``--body-model``)
      becomes ``--body_model``; the old spelling still parses but is not shown.
    * every option's help ends with its default, unless it already says it.
    """
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        shown = []
        for option in action.option_strings:
            if option.startswith("--") and "-" in option[2:]:
                snake = "--" + option[2:].replace("-", "_")
                parser._option_string_actions.setdefault(snake, action)  # the old spelling stays parseable
                option = snake
            shown.append(option)
        action.option_strings = shown
        if action.help is not None and "default" not in action.help.lower() and not isinstance(
                action, (argparse._HelpAction, argparse._VersionAction)):
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                action.help += f" (default: {'on' if action.default else 'off'})"
            elif action.required:
                action.help += " (required)"
            else:
                action.help += " (default: %(default)s)" if action.default is not None else " (default: none)"


def main(argv: list[str] | None = None) -> int:
    setup_logging()  # before any command imports Beam: its GCP import notes are dropped
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        result = args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        # User errors: one clear line, no traceback.
        print(f"vid2mesh {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

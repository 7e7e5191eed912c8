"""the `pattern-lens` command: `render` a model's heads, a synthetic `demo`, `bench` the export, rank heads
(`stats`), look at the heads in a `gallery` (also from disk) or `serve` it

This module parses the command line and dispatches; each command's logic lives with its stage:
`render` in `pattern_lens.figures`, `demo` in `pattern_lens.synthetic`, `gallery` in
`pattern_lens._view.commands`, `serve` in `pattern_lens.server`, `activations` and `run` in
`pattern_lens.activations`, `bench` in `pattern_lens.bench`, `stats` in `pattern_lens.head_stats`.
What they share (argument types, option groups, errors and Ctrl-C as exit codes) is
`pattern_lens._command`. Each subcommand is one entry of `COMMANDS`: a help line, a function adding
its arguments and a function running it (returning the exit code). Adding a subcommand is adding one
entry; its module is imported when the subcommand is used.

Exit codes: 0 everything rendered; 1 a figure function failed, input was bad, or another
`PatternLensError`; 2 bad command line (argparse); 130 / 143 interrupted by Ctrl-C / SIGTERM (one line
says what was done; a rerun resumes).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# light imports only (no numpy): a Ctrl-C while this module imports could not be caught by `main`
from pattern_lens._command import HELP, parse_bool, parse_index_list, positive_int, as_process, run_command, run_guarded

__all__ = ["main", "render_main", "command_main", "build_parser", "COMMANDS", "Command", "parse_index_list", "parse_bool", "positive_int"]


@dataclass(frozen=True)
class Command:
    """one subcommand: `help` line, `add_arguments(parser)`, `run(args) -> exit code`"""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _lazy(name: str, module: str, add: str = "add_arguments", run: str = "run_from_args", **add_kwargs) -> Command:
    """the subcommand `name` whose functions `add` and `run` are in `module`, imported when used"""

    def add_arguments(p: argparse.ArgumentParser) -> None:
        getattr(importlib.import_module(module), add)(p, **add_kwargs)

    def run_it(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), run)(args)

    return Command(HELP[name], add_arguments, run_it)


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """`serve`'s options from a module that builds no http server (a quick --help); its default folder
    is `attn_data`, as `render`'s, `gallery`'s and `stats`' (`python -m pattern_lens.server`: `.`, the reference's)"""
    from pattern_lens._view.serve_args import add_arguments
    from pattern_lens.consts import DATA_DIR

    add_arguments(p, positional=True, default_folder=DATA_DIR)


COMMANDS: dict[str, Command] = {
    "render": _lazy("render", "pattern_lens.figures"),
    "demo": _lazy("demo", "pattern_lens.synthetic", "add_demo_arguments", "run_demo"),
    "gallery": _lazy("gallery", "pattern_lens._view.commands", "add_gallery_arguments", "run_gallery"),
    "serve": Command(
        HELP["serve"],
        _add_serve_arguments,
        lambda args: importlib.import_module("pattern_lens.server").run_from_args(args),
    ),
    "activations": _lazy("activations", "pattern_lens.activations", "add_activations_arguments", "run_from_args"),
    "run": _lazy("run", "pattern_lens.activations", "add_run_arguments", "run_stream_from_args"),
    "bench": _lazy("bench", "pattern_lens.bench"),
    "stats": _lazy("stats", "pattern_lens.head_stats"),
}
"subcommands by name; add an entry to add a subcommand"


def build_parser(prog: str = "pattern-lens", only: str | None = None) -> argparse.ArgumentParser:
    """the `pattern-lens` parser, one subparser per entry of `COMMANDS`

    With `only` (the subcommand on the command line), only that subparser gets its options: the
    others' modules are then not imported (`pattern-lens serve` does not load the render engine).
    """
    parser = argparse.ArgumentParser(prog=prog, description="render every attention head of a transformer into image files")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        if only is None or name == only:
            cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def command_main(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """parse one subcommand's options alone and run it (as `python -m pattern_lens.<module>` does)"""
    cmd = COMMANDS[name]
    return run_command(name, cmd.add_arguments, cmd.run, argv, prog)


def render_main(argv: Sequence[str] | None = None, prog: str = "pattern-lens render") -> int:
    """parse render options alone (for `python -m pattern_lens.figures`) and run them"""
    return command_main("render", argv, prog)


def main(argv: Sequence[str] | None = None) -> int:
    """entry point of the `pattern-lens` console script

    # Parameters:
     - `argv : Sequence[str] | None` arguments without the program name (defaults to `None`: `sys.argv[1:]`)

    # Returns:
     - `int` exit code (0 success, 1 failures or bad input, 2 bad command line, 130 / 143 interrupted)
    """

    def parse_and_run() -> int:
        given = sys.argv[1:] if argv is None else list(argv)
        only = given[0] if given and given[0] in COMMANDS else None
        args = build_parser(only=only).parse_args(given)
        return args._run(args)

    return run_guarded(parse_and_run)


def console_main() -> int:
    """the `pattern-lens` console script: `main()` as this process's command (`as_process`)"""
    return as_process(main)


if __name__ == "__main__":
    sys.exit(console_main())

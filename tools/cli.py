"""The ``edgert`` command: small tools over shared option groups, each ``main(args)`` returning an exit status.

Exit status: 0 success, 2 user error (one line on stderr, no traceback unless --verbose), 1 internal error.
"""

from __future__ import annotations

import argparse
import sys
import traceback

import importlib

TOOL_NAMES = ("build", "run", "bench", "inspect", "memory", "partition", "targets", "compare", "tune", "triton")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line, as every other edgert error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgert", description="Build and run edgert inference plans.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", parser_class=_Parser)
    for name in TOOL_NAMES:
        tool = _tool(name)
        tool_parser = sub.add_parser(name, help=tool.HELP, description=tool.HELP)
        tool_parser.add_argument("--verbose", "-v", action="store_true", help="more output; tracebacks on errors")
        tool_parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                                 help="progress of long work (calibration, autotuning) on stderr: default on a "
                                      "terminal only; --progress also on a pipe, --no-progress never")
        tool.add_arguments(tool_parser)
    return parser


def _version() -> str:
    from edgert import __version__
    return f"edgert {__version__}"


def _tool(name: str):
    return importlib.import_module(f"edgert.tools.{name}")


def main(argv=None) -> int:
    try:   # Ctrl-C while the tools (and NumPy) are still being imported is no traceback either
        parser = make_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("edgert: interrupted", file=sys.stderr)
        return 130
    if args.tool is None:
        parser.print_help()
        return 2
    try:
        return _run_tool(args)
    except KeyboardInterrupt:
        print(f"edgert {args.tool}: interrupted", file=sys.stderr)
        return 130


def _run_tool(args) -> int:
    from edgert import log
    from edgert.errors import EdgeRTError

    from edgert import progress

    progress.set_enabled(args.progress)
    sink = log.add_sink(log.stderr_sink(), log.Severity.INFO if args.verbose else log.Severity.WARNING)
    try:
        return _tool(args.tool).main(args)
    except EdgeRTError as e:
        if args.verbose:
            traceback.print_exc()
        print(f"edgert {args.tool}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:   # sizes from the model or --shape beyond this machine: the user's to change
        if args.verbose:
            traceback.print_exc()
        detail = f" ({e})" if str(e) else ""
        print(f"edgert {args.tool}: error: out of memory{detail}: the model's tensor sizes (or --shape) need more "
              "memory than this machine has; use smaller shapes", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except Exception as e:  # a bug in edgert: say so, with the traceback when asked
        if args.verbose:
            traceback.print_exc()
        print(f"edgert {args.tool}: internal error: {type(e).__name__}: {e} (rerun with --verbose and report it)",
              file=sys.stderr)
        return 1
    finally:
        log.remove_sink(sink)


if __name__ == "__main__":
    sys.exit(main())

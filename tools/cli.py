"""The ``edgert`` command: small tools over shared option groups, each ``main(args)`` returning an exit status.

Exit status: 0 success, 2 user error (one line on stderr, no traceback unless --verbose), 1 internal error.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from edgert.errors import EdgeRTError
from edgert.tools import bench, build, compare, inspect, memory, partition, run, targets, triton, tune

TOOLS = {"build": build, "run": run, "bench": bench, "inspect": inspect, "memory": memory,
         "partition": partition, "targets": targets, "compare": compare, "tune": tune,
         "triton": triton}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line, as every other edgert error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgert", description="Build and run edgert inference plans.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", parser_class=_Parser)
    for name, tool in TOOLS.items():
        tool_parser = sub.add_parser(name, help=tool.HELP, description=tool.HELP)
        tool_parser.add_argument("--verbose", "-v", action="store_true", help="more output; tracebacks on errors")
        tool.add_arguments(tool_parser)
    return parser


def _version() -> str:
    from edgert import __version__
    return f"edgert {__version__}"


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.tool is None:
        parser.print_help()
        return 2
    try:
        return TOOLS[args.tool].main(args)
    except EdgeRTError as e:
        if args.verbose:
            traceback.print_exc()
        print(f"edgert {args.tool}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"edgert {args.tool}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in edgert: say so, with the traceback when asked
        if args.verbose:
            traceback.print_exc()
        print(f"edgert {args.tool}: internal error: {type(e).__name__}: {e} (rerun with --verbose and report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

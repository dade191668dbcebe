"""``--min-shape/--opt-shape/--max-shape NAME=DIMS`` (repeatable, ``--profile`` starts the next profile, as
trtexec's groups) and ``--profiles FILE``: the optimization profiles of ``edgert build``."""

from __future__ import annotations

import argparse

from edgert.tools.args import UsageError

_KINDS = {"--min-shape": "min", "--opt-shape": "opt", "--max-shape": "max"}


class _InOrder(argparse.Action):
    """Keeps every profile option in command-line order in ``args.profile_specs``."""

    def __call__(self, parser, namespace, values, option_string=None):
        specs = getattr(namespace, "profile_specs", None) or []
        specs.append((option_string, values))
        namespace.profile_specs = specs


def add_profile_options(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(profile_specs=[])
    for flag, kind in _KINDS.items():
        parser.add_argument(flag, action=_InOrder, metavar="NAME=DIMS",
                            help=f"{kind} shape of a dynamic input in the current optimization profile (repeatable)")
    parser.add_argument("--profile", action=_InOrder, nargs=0,
                        help="start the next optimization profile (the shape options after it belong to it)")
    parser.add_argument("--profiles", metavar="FILE", help="optimization profiles from a TOML or JSON file")


def parse_profiles(args) -> list[dict] | None:
    """The profiles the options give ([{input: {"min": dims, "opt": dims, "max": dims}}]), or None."""
    from edgert.profiles import load_profiles_file, parse_dims

    specs = args.profile_specs
    if args.profiles:
        if specs:
            raise UsageError("give optimization profiles either with --profiles FILE or with "
                             "--min-shape/--opt-shape/--max-shape, not both")
        return load_profiles_file(args.profiles)
    if not specs:
        return None
    profiles: list[dict] = [{}]
    for flag, value in specs:
        if flag == "--profile":
            if profiles[-1]:
                profiles.append({})
            continue
        name, sep, dims = value.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} {value!r} is malformed; expected NAME=DIMS such as input=1x3x224x224")
        entry = profiles[-1].setdefault(name, {})
        kind = _KINDS[flag]
        if kind in entry:
            raise UsageError(f"{flag} given twice for input {name!r} in profile {len(profiles) - 1}")
        entry[kind] = parse_dims(dims, f"{flag} {name}")
    for index, profile in enumerate(profiles):
        for name, entry in profile.items():
            missing = [f"--{k}-shape" for k in ("min", "opt", "max") if k not in entry]
            if missing:
                raise UsageError(f"profile {index}, input {name!r}: {', '.join(missing)} missing (each input of a "
                                 "profile needs --min-shape, --opt-shape and --max-shape)")
    if not profiles[-1]:
        profiles.pop()
    return profiles or None

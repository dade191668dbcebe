"""Placement files: ordered rules that pin layers to the GPU or a DLA core (``--placement FILE``).

    # placement.toml: rules apply in order and later rules win
    [[rule]]
    layer = "backbone/*"      # glob over layer names (a fused layer answers to the names it absorbed)
    device = "dla"            # "gpu", "dla" (the --dla-core, else core 0) or "dla:1"

    [[rule]]
    kind = "Softmax"          # a layer kind (a fused layer answers to the kinds it stands for)
    device = "gpu"

A rule may give ``layer`` and ``kind`` together (both must match). A rule that matches no layer is a
warning in the partition report; a rule that puts a layer on a DLA that cannot run it is an error.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Iterable

from edgert.errors import EdgeRTError
from edgert.ir.kinds import LayerKind
from edgert.targets.layers import from_node, members

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

_KINDS = {kind.value.lower(): kind for kind in LayerKind}


class PlacementFileError(EdgeRTError):
    """A placement file cannot be read or has a malformed rule."""


@dataclass(frozen=True)
class PlacementRule:
    index: int                  # 1-based position in the file
    device: str                 # "gpu", "dla" or "dla:N"
    layer: str | None = None    # name glob
    kind: LayerKind | None = None

    def describe(self) -> str:
        parts = ([f"layer {self.layer!r}"] if self.layer else []) + ([f"kind {self.kind.value}"] if self.kind else [])
        return f"placement rule {self.index} ({' and '.join(parts)} -> {self.device})"

    def matches(self, node) -> bool:
        if self.layer is not None and not any(fnmatch.fnmatchcase(name, self.layer)
                                              for name in [node.name, *node.origin]):
            return False
        return self.kind is None or self.kind in member_kinds(node)


def member_kinds(node) -> set[LayerKind]:
    """The kinds a layer stands for: its own, and for fused layers those of what it absorbed."""
    kinds = {node.kind}
    if node.kind == LayerKind.POINTWISE or node.attrs.get("epilogue"):
        kinds |= {part.kind for part in members(from_node(node)) if part.kind is not None}
    return kinds


def read_rule_file(source, what: str, error: type) -> tuple[dict, str]:
    """(parsed rules document, name for messages) from a TOML path, a parsed dict or a list of rule dicts.

    Shared by placement and precision rules, which may live in the same file.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return tomllib.load(f), str(source)
        except OSError as e:
            raise error(f"cannot read {what} {str(source)!r}: {e.strerror}") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:   # TOML files are UTF-8 text
            raise error(f"{what} {str(source)!r} is not valid TOML (UTF-8 text): {e}") from e
    return (source if isinstance(source, dict) else {"rule": list(source)}), what


def check_rule_keys(entry: dict, index: int, where: str, error: type) -> None:
    """A rule's keys, shared by placement and precision rules (one file may hold both): layer and/or kind
    to select, device and/or precision to set, nothing else."""
    unknown = sorted(set(entry) - {"layer", "kind", "device", "precision"})
    if unknown:
        raise error(f"{where}: rule {index} has unknown key {unknown[0]!r}; "
                    "expected layer or kind, and device and/or precision")
    if "layer" not in entry and "kind" not in entry:
        raise error(f"{where}: rule {index} names neither a layer glob nor a kind")


def load_placement(source) -> list[PlacementRule]:
    """Rules from a path, a TOML string's parsed dict, or a list of rule dicts."""
    if isinstance(source, (list, tuple)) and all(isinstance(r, PlacementRule) for r in source):
        return list(source)
    data, where = read_rule_file(source, "placement file", PlacementFileError)
    unknown = sorted(set(data) - {"rule"})
    if unknown:
        raise PlacementFileError(f"{where}: unknown table {unknown[0]!r}; a placement file holds [[rule]] tables")
    rules = [_parse_rule(entry, index, where) for index, entry in enumerate(data.get("rule", []), start=1)]
    return [rule for rule in rules if rule is not None]


def _parse_rule(entry: dict, index: int, where: str) -> PlacementRule | None:
    """The placement part of a rule; None for a rule that only sets a precision (edgert/precision.py)."""
    check_rule_keys(entry, index, where, PlacementFileError)
    if "device" not in entry:
        if "precision" not in entry:
            raise PlacementFileError(f"{where}: rule {index} sets neither a device nor a precision")
        return None
    device = str(entry.get("device", "")).lower()
    if device not in ("gpu", "dla") and not (device.startswith("dla:") and device[4:].isdigit()):
        raise PlacementFileError(f"{where}: rule {index} has device {entry.get('device')!r}; "
                                 "expected gpu, dla or dla:N")
    kind = None
    if "kind" in entry:
        kind = _KINDS.get(str(entry["kind"]).lower())
        if kind is None:
            raise PlacementFileError(f"{where}: rule {index} names unknown kind {entry['kind']!r}; kinds are "
                                     f"{', '.join(sorted(k.value for k in LayerKind))}")
    return PlacementRule(index, device, entry.get("layer"), kind)


def apply_rules(nodes: Iterable, rules: list[PlacementRule]) -> tuple[dict[int, PlacementRule], list[str]]:
    """For each node id, the last rule that matches it; plus a warning for every rule that matches nothing."""
    chosen: dict[int, PlacementRule] = {}
    nodes = list(nodes)
    warnings = []
    for rule in rules:
        hits = [node for node in nodes if rule.matches(node)]
        if not hits:
            warnings.append(f"{rule.describe()} matches no layer")
        for node in hits:
            chosen[id(node)] = rule
    return chosen, warnings

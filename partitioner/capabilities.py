"""DLA capability tables (data: ``dla_v1.toml`` = Xavier, ``dla_v2.toml`` = Orin) and the engine that applies them.

A table lists general rules (every layer) and, per layer kind, ordered rules; each rule names a
check from ``partitioner.checks`` with its parameters and carries the sentence shown to users. A
kind missing from the table cannot run on the DLA. Fused layers are judged by what they stand for:
a Convolution with an epilogue when each epilogue step is DLA-capable, a PointWise layer when each
instruction is.

    table = CapabilityTable.for_version(2); verdict = table.check(from_node(node), "fp16")
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from edgert.errors import EdgeRTError
from edgert.ir.kinds import LayerKind
from edgert.partitioner.checks import CHECKS, plain
from edgert.targets.layers import LayerInfo, from_node, members

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

TABLE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""     # the user-facing sentence, with what was found
    rule: str = ""       # the rule's id, e.g. "Convolution.kernel"

    def __bool__(self) -> bool:
        return self.ok


OK = Verdict(True)


class CapabilityTable:
    """One DLA version's rules; ``check`` says whether a layer may run there and, if not, why."""

    def __init__(self, data: dict, origin: str = "<dict>"):
        self.version = int(data["version"])
        self.name = data.get("name", f"DLA v{self.version}")
        self.sources = list(data.get("sources", []))
        general = data.get("general", {})
        self.max_loadables_per_core = int(general.get("max_loadables_per_core", 16))
        self.general_rules = [_validated(r, "general", origin) for r in general.get("rules", [])]
        self.layer_rules = {LayerKind(kind): [_validated(r, kind, origin) for r in rules]
                            for kind, rules in data.get("layers", {}).items()}
        self.unsupported = {LayerKind(kind): reason for kind, reason in data.get("unsupported", {}).items()}

    @classmethod
    @functools.lru_cache(maxsize=None)
    def for_version(cls, version: int) -> "CapabilityTable":
        path = TABLE_DIR / f"dla_v{int(version)}.toml"
        if not path.is_file():
            raise EdgeRTError(f"no DLA capability table for DLA version {version} (expected {path.name})")
        with open(path, "rb") as f:
            return cls(tomllib.load(f), path.name)

    def supports_kind(self, kind: LayerKind) -> bool:
        return LayerKind(kind) in self.layer_rules

    def check(self, layer: LayerInfo, precision: str = "fp16") -> Verdict:
        """Whether ``layer`` (a fused one included) may run on this DLA version at ``precision``."""
        parts = members(layer)
        for part in parts:
            verdict = self._check_plain(part, precision)
            if not verdict.ok:
                if part is not parts[0] or part.name != layer.name:
                    return Verdict(False, f"{part.name.replace(layer.name, 'fused', 1)}: {verdict.reason}",
                                   verdict.rule)
                return verdict
        return OK

    def check_node(self, node, precision: str = "fp16") -> Verdict:
        return self.check(from_node(node), precision)

    def _check_plain(self, layer: LayerInfo, precision: str) -> Verdict:
        if layer.kind is None:
            op = plain(layer.attrs.get("op"))
            return Verdict(False, f"the fused step {op!r} has no DLA equivalent", "fused.unknown")
        if layer.kind not in self.layer_rules:
            reason = self.unsupported.get(layer.kind, f"{self.name} has no {layer.kind.value} layer")
            return Verdict(False, reason, f"{layer.kind.value}.unsupported")
        for rule in self.general_rules + self.layer_rules[layer.kind]:
            if not _applies(rule, layer, precision):
                continue
            found = CHECKS[rule["check"]](layer, rule, precision)
            if found is not None:
                return Verdict(False, f"{rule['reason']} (found {found})", _rule_id(rule, layer))
        return OK


def _validated(rule: dict, where: str, origin: str) -> dict:
    if rule.get("check") not in CHECKS:
        raise EdgeRTError(f"{origin}: rule in [{where}] names unknown check {rule.get('check')!r}; "
                          f"known checks: {', '.join(sorted(CHECKS))}")
    if not rule.get("reason"):
        raise EdgeRTError(f"{origin}: rule {rule['check']!r} in [{where}] has no reason sentence")
    return rule


def _applies(rule: dict, layer: LayerInfo, precision: str) -> bool:
    """``when_attr`` / ``when_in`` limit a rule to some sub-ops; ``unless_precision`` exempts a precision."""
    if "when_attr" in rule:
        value = str(plain(layer.attrs.get(rule["when_attr"], ""))).lower()
        if value not in {str(v).lower() for v in rule["when_in"]}:
            return False
    used = layer.precision or precision
    return used not in rule.get("unless_precision", ())


def _rule_id(rule: dict, layer: LayerInfo) -> str:
    return rule.get("id") or f"{layer.kind.value}.{rule.get('attr', rule['check'])}"

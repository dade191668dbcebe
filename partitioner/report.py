"""The placement report: per layer where it runs and why, DLA segments, transitions, predicted times."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerPlacement:
    name: str
    kind: str
    device: str
    reason: str
    predicted_ms: float = 0.0
    origin: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "device": self.device, "reason": self.reason,
                "predicted_ms": round(self.predicted_ms, 6), "origin": list(self.origin)}


@dataclass
class PartitionReport:
    target: str
    options: dict
    layers: list[LayerPlacement] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)   # {"device", "layers", "predicted_ms"}
    transitions: int = 0
    predicted_ms: dict = field(default_factory=dict)     # per device, "reformat", "dla_submit", "total"
    warnings: list[str] = field(default_factory=list)

    def layer(self, name: str) -> LayerPlacement:
        for placement in self.layers:
            if placement.name == name or name in placement.origin:
                return placement
        raise KeyError(name)

    def devices(self) -> dict[str, str]:
        return {p.name: p.device for p in self.layers}

    @classmethod
    def from_dict(cls, data: dict) -> "PartitionReport":
        """The report back from ``to_dict()`` (e.g. from a plan's header, for ``edgert inspect``)."""
        layers = [LayerPlacement(row["name"], row["kind"], row["device"], row["reason"],
                                 float(row.get("predicted_ms", 0.0)), list(row.get("origin", [])))
                  for row in data.get("layers", [])]
        return cls(data.get("target", "?"), dict(data.get("options", {})), layers, list(data.get("segments", [])),
                   int(data.get("transitions", 0)), dict(data.get("predicted_ms", {})), list(data.get("warnings", [])))

    def to_dict(self) -> dict:
        return {
            "target": self.target, "options": dict(self.options),
            "layers": [p.to_dict() for p in self.layers],
            "segments": [dict(s) for s in self.segments],
            "transitions": int(self.transitions),
            "predicted_ms": {k: round(v, 6) for k, v in self.predicted_ms.items()},
            "warnings": list(self.warnings),
        }

    def format(self, width: int = 60) -> str:
        """A per-layer table followed by segments, transitions, predicted times and warnings."""
        rows = [("#", "layer", "kind", "device", "ms", "reason")]
        for index, p in enumerate(self.layers):
            rows.append((str(index), p.name, p.kind, p.device, f"{p.predicted_ms:.3f}", p.reason))
        widths = [min(max(len(row[i]) for row in rows), width) for i in range(5)]
        lines = [f"partition for target {self.target} ({_options(self.options)}):"]
        for row in rows:
            cells = [cell[:width].ljust(w) for cell, w in zip(row[:5], widths)]
            lines.append("  " + "  ".join(cells) + "  " + row[5])
        lines.append(f"{len(self.segments)} DLA segment{'s' if len(self.segments) != 1 else ''}, "
                     f"{self.transitions} transition{'s' if self.transitions != 1 else ''}")
        for index, segment in enumerate(self.segments):
            names = segment["layers"]
            shown = ", ".join(names) if len(names) <= 4 else f"{names[0]}, ..., {names[-1]}"
            lines.append(f"  segment {index} on {segment['device']}: {len(names)} layers "
                         f"({shown}), {segment['predicted_ms']:.3f} ms")
        times = ", ".join(f"{k} {v:.3f} ms" for k, v in self.predicted_ms.items())
        lines.append(f"predicted: {times}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _options(options: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items() if v not in (None, False, ""))

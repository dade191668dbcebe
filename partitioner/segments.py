"""DLA segments (loadables), device transitions, and the Reformat layers that make each transition explicit.

A segment is a set of layers on one DLA core that runs as one loadable: connected through DLA-to-DLA
edges and convex (no path leaves it and comes back). A transition is a tensor produced on one device
and read on another; each becomes one Reformat layer (layout and precision conversion) per reading
device. Graph inputs and outputs are bound by the caller and cause no transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import infer_node

# TensorRT's DLA tensor formats: FP16 in CHW16, INT8 in CHW32; the GPU side here is linear (NCHW).
DLA_LAYOUT = {"fp16": "chw16", "int8": "chw32"}


@dataclass
class Segment:
    device: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]


def is_dla(device: str) -> bool:
    return device.startswith("dla")


def find_segments(graph: Graph, devices: dict[int, str]) -> list[Segment]:
    """The DLA segments of an assignment (node id -> device), in graph order."""
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    parent = {id(n): id(n) for n in graph.nodes if is_dla(devices[id(n)])}

    def root(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for node in graph.nodes:
        if id(node) not in parent:
            continue
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and devices.get(id(producer)) == devices[id(node)]:
                parent[root(id(producer))] = root(id(node))
    groups: dict[int, list[Node]] = {}
    for node in graph.nodes:
        if id(node) in parent:
            groups.setdefault(root(id(node)), []).append(node)
    segments = []
    for members in groups.values():
        segments.extend(_convex_parts(graph, members, devices[id(members[0])]))
    return sorted(segments, key=lambda s: position[id(s.nodes[0])])


def _convex_parts(graph: Graph, members: list[Node], device: str) -> list[Segment]:
    """Split a connected DLA component where a path leaves it and re-enters: each re-entry starts a later part."""
    inside = {id(n) for n in members}
    level: dict[int, int] = {}
    carried: dict[int, int] = {}  # outside node -> highest part level that reaches it
    for node in graph.nodes:
        producers = [v.producer() for v in node.inputs if v is not None and v.producer() is not None]
        if id(node) in inside:
            level[id(node)] = max([level[id(p)] for p in producers if id(p) in inside] +
                                  [carried[id(p)] + 1 for p in producers if id(p) in carried] + [0])
        else:
            reached = [level[id(p)] for p in producers if id(p) in inside] + \
                      [carried[id(p)] for p in producers if id(p) in carried]
            if reached:
                carried[id(node)] = max(reached)
    parts: dict[int, Segment] = {}
    for node in members:
        parts.setdefault(level[id(node)], Segment(device)).nodes.append(node)
    return [parts[k] for k in sorted(parts)]


def crossings(graph: Graph, devices: dict[int, str]) -> list[tuple[Value, str, str]]:
    """(tensor, from device, to device) for every tensor read on a device other than its producer's."""
    result = []
    for node in graph.nodes:
        source = devices[id(node)]
        for value in node.outputs:
            targets = sorted({devices[id(user)] for user in value.users()} - {source})
            result.extend((value, source, target) for target in targets)
    return result


def precision_on(device: str, precision: str) -> str:
    """The element type a tensor has on a device: the DLA holds FP16 or INT8, the GPU the build precision."""
    return ("int8" if precision == "int8" else "fp16") if is_dla(device) else precision


def layout_on(device: str, precision: str) -> str:
    return DLA_LAYOUT[precision_on(device, precision)] if is_dla(device) else "linear"


def insert_reformats(graph: Graph, devices: dict[int, str], precision: str, cost_ms) -> list[Node]:
    """One Reformat layer per transition, placed right after the producer; readers on the target device
    read its output. ``cost_ms(value, from, to)`` gives each one's modeled cost (stored in its attrs)."""
    added = []
    for value, source, target in crossings(graph, devices):
        attrs = {
            "from_device": source, "to_device": target,
            "from_layout": layout_on(source, precision), "to_layout": layout_on(target, precision),
            "from_precision": precision_on(source, precision), "to_precision": precision_on(target, precision),
            "cost_ms": float(cost_ms(value, source, target)),
        }
        name = f"reformat({value.name} {source}->{target})"
        reformat = graph.add_node(LayerKind.REFORMAT, [value], attrs, name=name, origin=[])
        reformat.origin = []
        infer_node(reformat)
        graph.nodes.remove(reformat)
        graph.nodes.insert(graph.nodes.index(value.producer()) + 1, reformat)
        reformat.device = "gpu"  # as in TensorRT, a GPU kernel converts at both kinds of boundary
        devices[id(reformat)] = reformat.device
        for user, slot in value.uses():
            if user is not reformat and devices[id(user)] == target:
                user.set_input(slot, reformat.outputs[0])
        added.append(reformat)
    return added

"""Shape and dtype inference: one rule per layer kind, registered with ``@shape_rule(kind)``.

A rule takes the node (its inputs carry dtype, shape and, for constants, data) and returns one
``(DataType, shape)`` pair per output. Rules raise ShapeError with the node's name on bad shapes.
"""

from __future__ import annotations

from typing import Callable

from edgert.errors import GraphError, ShapeError
from edgert.ir.dtypes import DataType
from edgert.ir.graph import Graph, Node
from edgert.ir.kinds import LayerKind
from edgert.ir.limits import check_shape

ShapeRule = Callable[[Node], "list[tuple[DataType, tuple[int, ...]]]"]
_RULES: dict[LayerKind, ShapeRule] = {}


def shape_rule(*kinds: LayerKind):
    def register(rule: ShapeRule) -> ShapeRule:
        for kind in kinds:
            if kind in _RULES:
                raise GraphError(f"a shape rule for {kind.value} is already registered")
            _RULES[kind] = rule
        return rule
    return register


def infer_node(node: Node) -> None:
    """Set dtype and shape on every output of ``node``."""
    _load_rules()
    rule = _RULES.get(node.kind)
    if rule is None:
        raise GraphError(f"no shape rule for layer kind {node.kind.value} (layer {node.name!r})")
    for value in node.inputs:
        if value is not None and (value.shape is None or value.dtype is None):
            raise ShapeError(f"layer {node.name!r}: input {value.name!r} has no known shape")
    results = rule(node)
    if len(results) != len(node.outputs):
        raise GraphError(f"shape rule for {node.kind.value} gave {len(results)} outputs, "
                         f"layer {node.name!r} has {len(node.outputs)}")
    for value, (dtype, shape) in zip(node.outputs, results):
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ShapeError(f"layer {node.name!r} ({node.kind.value}): negative output dimension {shape}")
        check_shape(shape, DataType(dtype).itemsize, f"layer {node.name!r} ({node.kind.value}) output")
        value.dtype, value.shape = DataType(dtype), shape


def infer_graph(graph: Graph) -> None:
    for node in graph.nodes:
        infer_node(node)


def rule_for(kind: LayerKind) -> ShapeRule | None:
    """The shape rule of ``kind`` (the runtime re-checks plans with it and re-runs it when a dynamic plan's
    input shapes change), None when there is none."""
    _load_rules()
    return _RULES.get(kind)


def registered_kinds() -> set[LayerKind]:
    _load_rules()
    return set(_RULES)


def _load_rules() -> None:
    if not _RULES:
        import edgert.ir.shapes  # noqa: F401  (registers every rule)

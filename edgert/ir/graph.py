"""The mutable graph that the importer builds and the passes rewrite.

Values know their producer and their uses, so passes walk edges instead of searching node lists.
A value is either a graph input, a constant (``value.const`` holds the NumPy array) or the output
of exactly one node. Nodes keep the names of the original model layers they stand for in
``origin``, so fused layers can say what they replaced.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator, Sequence

import numpy as np

from edgert.errors import GraphError
from edgert.ir.dtypes import DataType
from edgert.ir.kinds import LayerKind


class Value:
    """A tensor edge: dtype, static shape, optional constant data, one producer, many uses."""

    __slots__ = ("name", "dtype", "shape", "const", "_producer", "_uses")

    def __init__(self, name: str, dtype: DataType | None = None, shape: Sequence[int] | None = None,
                 const: np.ndarray | None = None):
        self.name = name
        self.const = None
        self.dtype = dtype
        self.shape = tuple(int(d) for d in shape) if shape is not None else None
        self._producer: Node | None = None
        self._uses: list[tuple[Node, int]] = []
        if const is not None:
            self.set_const(const)

    def set_const(self, array: np.ndarray) -> None:
        array = np.asarray(array)
        self.const = array
        self.dtype = DataType.of(array.dtype)
        self.shape = tuple(array.shape)

    def producer(self) -> "Node | None":
        return self._producer

    def uses(self) -> list[tuple["Node", int]]:
        """(node, input index) pairs reading this value."""
        return list(self._uses)

    def users(self) -> list["Node"]:
        seen: dict[int, Node] = {}
        for node, _ in self._uses:
            seen.setdefault(id(node), node)
        return list(seen.values())

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape is not None else 0

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize if self.dtype is not None else 0

    def __repr__(self) -> str:
        kind = "const " if self.is_const else ""
        return f"Value({kind}{self.name!r}, {self.dtype.value if self.dtype else '?'}, {self.shape})"


class Node:
    """One layer: a kind, its parameters, ordered inputs (None for an absent optional input) and outputs."""

    __slots__ = ("name", "kind", "attrs", "_inputs", "_outputs", "origin", "device", "precision", "tactic")

    def __init__(self, name: str, kind: LayerKind, attrs: dict | None = None, origin: Sequence[str] = ()):
        self.name = name
        self.kind = LayerKind(kind)
        self.attrs = dict(attrs or {})
        self._inputs: list[Value | None] = []
        self._outputs: list[Value] = []
        self.origin = list(origin) or [name]
        self.device = "cpu"
        self.precision = None
        self.tactic = None

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    def set_input(self, index: int, value: Value | None) -> None:
        old = self._inputs[index]
        if old is not None:
            old._uses.remove((self, index))
        self._inputs[index] = value
        if value is not None:
            value._uses.append((self, index))

    def append_input(self, value: Value | None) -> None:
        self._inputs.append(None)
        self.set_input(len(self._inputs) - 1, value)

    def _attach(self, inputs: Iterable[Value | None], outputs: Iterable[Value]) -> None:
        for index, value in enumerate(inputs):
            self._inputs.append(None)
            self.set_input(index, value)
        for value in outputs:
            if value._producer is not None or value.is_const:
                raise GraphError(f"value {value.name!r} already has a producer")
            value._producer = self
            self._outputs.append(value)

    def _detach(self) -> None:
        for index in range(len(self._inputs)):
            self.set_input(index, None)
        for value in self._outputs:
            value._producer = None

    def __repr__(self) -> str:
        ins = ", ".join(v.name if v is not None else "-" for v in self._inputs)
        outs = ", ".join(v.name for v in self._outputs)
        return f"Node({self.name!r}, {self.kind.value}, [{ins}] -> [{outs}], {self.attrs})"


class Graph:
    """Nodes in a valid execution order, graph inputs, and graph outputs by their external names.

    ``outputs[i]`` is published under ``output_names[i]``; rewrites that replace an output value keep
    its external name.
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self.nodes: list[Node] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.output_names: list[str] = []
        # int8 scale of a float tensor, by value name, from the model's Quantize/Dequantize pairs
        self.tensor_scales: dict[str, float] = {}
        self._names: set[str] = set()
        self._counter = itertools.count()

    # -- construction ------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        name = base
        while name in self._names:
            name = f"{base}_{next(self._counter)}"
        self._names.add(name)
        return name

    def add_input(self, name: str, dtype: DataType, shape: Sequence[int]) -> Value:
        if name in self._names:
            raise GraphError(f"graph input name {name!r} is already used by another value")
        value = Value(self.unique_name(name), dtype, shape)
        self.inputs.append(value)
        return value

    def add_output(self, value: Value, name: str | None = None) -> None:
        self.outputs.append(value)
        self.output_names.append(name or value.name)

    def constant(self, array, name: str = "const") -> Value:
        return Value(self.unique_name(name), const=np.asarray(array))

    def add_node(self, kind: LayerKind, inputs: Sequence[Value | None], attrs: dict | None = None, *,
                 name: str = "layer", num_outputs: int = 1, output_names: Sequence[str] | None = None,
                 origin: Sequence[str] = ()) -> Node:
        node = Node(self.unique_name(name), kind, attrs, origin)
        names = list(output_names) if output_names else [f"{node.name}_out{i}" if num_outputs > 1
                                                         else f"{node.name}_out" for i in range(num_outputs)]
        node._attach(inputs, [Value(self.unique_name(n)) for n in names])
        self.nodes.append(node)
        return node

    def remove_node(self, node: Node) -> None:
        """Remove a node whose outputs nobody reads any more."""
        for value in node.outputs:
            if value._uses or value in self.outputs:
                raise GraphError(f"cannot remove {node.name!r}: its output {value.name!r} is still used")
        node._detach()
        self.nodes.remove(node)

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every reader of ``old`` (graph outputs included) read ``new`` instead."""
        for node, index in old.uses():
            node.set_input(index, new)
        self.outputs = [new if v is old else v for v in self.outputs]
        if old.name in self.tensor_scales:  # the tensor that takes over keeps the quantization scale
            self.tensor_scales.setdefault(new.name, self.tensor_scales[old.name])

    # -- queries -----------------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        """Every value reachable from the nodes, inputs and outputs, each once."""
        seen: set[int] = set()
        for value in itertools.chain(self.inputs, (v for n in self.nodes for v in n.inputs if v is not None),
                                     (v for n in self.nodes for v in n.outputs), self.outputs):
            if id(value) not in seen:
                seen.add(id(value))
                yield value

    def toposort(self) -> None:
        """Reorder nodes so every producer comes before its users (stable for already-sorted graphs)."""
        order: list[Node] = []
        state: dict[int, int] = {}
        for root in self.nodes:
            stack = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    state[id(node)] = 2
                    order.append(node)
                    continue
                if state.get(id(node)) == 2:
                    continue
                if state.get(id(node)) == 1:
                    raise GraphError(f"graph has a cycle through {node.name!r}")
                state[id(node)] = 1
                stack.append((node, True))
                for value in reversed(node.inputs):
                    producer = value.producer() if value is not None else None
                    if producer is not None and state.get(id(producer)) != 2:
                        if state.get(id(producer)) == 1:
                            raise GraphError(f"graph has a cycle through {producer.name!r}")
                        stack.append((producer, False))
        self.nodes = order

    def verify(self) -> None:
        """Check the graph's invariants; raise GraphError naming the first violation."""
        index = {id(n): i for i, n in enumerate(self.nodes)}
        input_ids = {id(v) for v in self.inputs}
        for i, node in enumerate(self.nodes):
            for slot, value in enumerate(node.inputs):
                if value is None:
                    continue
                if (node, slot) not in value._uses:
                    raise GraphError(f"{node.name!r} input {slot} ({value.name!r}) does not list it as a use")
                producer = value.producer()
                if producer is None and not value.is_const and id(value) not in input_ids:
                    raise GraphError(f"{node.name!r} reads {value.name!r}, which has no producer, "
                                     "is not constant and is not a graph input")
                if producer is not None and index.get(id(producer), len(self.nodes)) >= i:
                    raise GraphError(f"{node.name!r} reads {value.name!r} before its producer runs")
            for value in node.outputs:
                if value.producer() is not node:
                    raise GraphError(f"{value.name!r} is an output of {node.name!r} but names another producer")
                if value.shape is None or value.dtype is None:
                    raise GraphError(f"{value.name!r} (output of {node.name!r}) has no inferred shape/dtype")
            for value in node.inputs:
                if value is not None:
                    for user, _ in value._uses:
                        if id(user) not in index:
                            raise GraphError(f"{value.name!r} is used by {user.name!r}, which is not in the graph")
        for value in self.values():
            for user, slot in value._uses:
                if slot >= len(user._inputs) or user._inputs[slot] is not value:
                    raise GraphError(f"{value.name!r} lists {user.name!r} input {slot} as a use, but that input "
                                     "reads another value")
        for value in self.outputs:
            if value.producer() is None and not value.is_const and id(value) not in input_ids:
                raise GraphError(f"graph output {value.name!r} is not produced by any node")
        names = [v.name for v in self.values()]
        if len(names) != len(set(names)):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise GraphError(f"value names are not unique: {dup[:5]}")

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, inputs={self.inputs}, outputs={self.outputs})"

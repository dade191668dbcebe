"""Schedule: a topological order of the graph that lowers peak live memory, and its memory plan.

Candidates are the model's own order, a greedy list schedule that at each step runs the ready
layer that grows live memory least, and a depth-first order that finishes a branch before starting
the next. Each candidate is scored by the planner's lower bound (peak bytes alive, aliases
included), and the lowest wins (ties keep the earlier candidate, so the model's order is kept when
reordering does not help).
"""

from __future__ import annotations

import heapq

from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import LayerKind
from edgert.memory import MemoryPlan, StepSpec, TensorSpec, _buffers, _resolve_aliases, lower_bound, plan_memory

_INPLACE_KINDS = {LayerKind.ACTIVATION, LayerKind.ELEMENTWISE, LayerKind.UNARY, LayerKind.SCALE,
                  LayerKind.PARAMETRIC_RELU}


def step_alias(node: Node, cpu_kernels: bool = True, dynamic: bool = False) -> tuple[str | None, int, int]:
    """How the memory planner may alias this layer's output: (alias, concat axis, view byte offset).

    ``cpu_kernels``: the plan runs this layer with the CPU runtime's kernels (no CUDA kernels compiled, not on a
    DLA core). Those may also write over their input where parallel GPU threads could not: LRN in place (it
    reads every channel of its input before writing), and pooling and depthwise convolution "overwrite" (output
    planes no larger than input planes, written from the input's start; the native kernels copy each plane out
    before writing over it, the runtime gives any other kernel scratch and copies).
    """
    if node.kind == LayerKind.SHUFFLE and _is_identity_perm(node.attrs.get("first_perm")) \
            and _is_identity_perm(node.attrs.get("second_perm")):
        return "view", 0, 0
    if dynamic and node.kind in (LayerKind.SLICE, LayerKind.CONCATENATION):
        return None, 0, 0
    if node.kind == LayerKind.SLICE:
        offset = contiguous_slice_offset(node.inputs[0].shape, node.attrs, node.inputs[0].dtype.itemsize)
        return ("view", 0, offset) if offset is not None else (None, 0, 0)
    if node.kind == LayerKind.CONCATENATION:
        rank = len(node.outputs[0].shape)
        return "concat", int(node.attrs["axis"]) % max(rank, 1), 0
    if node.kind in _INPLACE_KINDS and node.outputs[0].dtype == _first_dtype(node):
        return "inplace", 0, 0
    if cpu_kernels and not node.device.startswith("dla"):
        if node.kind == LayerKind.LRN and node.outputs[0].dtype == _first_dtype(node):
            return "inplace", 0, 0
        if _writes_planes(node):
            return "overwrite", 0, 0
    return None, 0, 0


def _writes_planes(node: Node) -> bool:
    """2-D max/average pooling and depthwise convolution with one output, plane for plane (N x C the same)."""
    x, outputs = node.inputs[0], node.outputs
    if len(outputs) != 1 or x is None or len(x.shape) != 4 or outputs[0].dtype != x.dtype:
        return False
    if tuple(outputs[0].shape[:2]) != tuple(x.shape[:2]):
        return False
    if node.kind == LayerKind.POOLING:
        return node.attrs.get("type") in ("max", "average")
    if node.kind == LayerKind.CONVOLUTION:
        return int(node.attrs.get("group", 1)) == x.shape[1] > 1
    return False


def contiguous_slice_offset(shape, attrs: dict, itemsize: int) -> int | None:
    """Byte offset of a slice that is one contiguous run of its input, else None.

    Contiguous: unit steps, every axis after the last partially taken axis k taken whole, and every
    axis before k taken at size 1.
    """
    starts, sizes, steps = attrs["starts"], attrs["sizes"], attrs["steps"]
    if any(step != 1 for step in steps):
        return None
    partial = [axis for axis in range(len(shape)) if sizes[axis] != shape[axis]]
    if partial and any(sizes[axis] != 1 for axis in range(partial[-1])):
        return None
    offset, stride = 0, itemsize
    for axis in reversed(range(len(shape))):
        offset += int(starts[axis]) * stride
        stride *= shape[axis]
    return offset


def _first_dtype(node: Node):
    return next((v.dtype for v in node.inputs if v is not None), None)


def _is_identity_perm(perm) -> bool:
    return perm is None or list(perm) == list(range(len(perm)))


class ScheduleSpecs:
    """Tensor ids and planner specs for a graph in a given node order."""

    def __init__(self, graph: Graph, order: list[Node], pool_of=lambda node: "cpu", cpu_kernels: bool = True,
                 keep=(), dynamic: bool = False):
        """``keep``: values that must survive to the end like graph outputs (the row counts of bounded outputs)."""
        self.ids: dict[int, int] = {}
        self.values: list[Value] = []
        external = {id(v) for v in graph.inputs}
        outputs = {id(v) for v in graph.outputs} | {id(v) for v in keep}
        pools: dict[int, str] = {}
        for node in order:
            for v in node.outputs:
                pools[id(v)] = pool_of(node)
        for value in graph.inputs:
            self._id(value)
        self.steps = []
        self.cpu_only_steps = []   # steps given an alias that only the CPU runtime's kernels support
        for index, node in enumerate(order):
            alias, axis, offset = step_alias(node, cpu_kernels, dynamic)
            if cpu_kernels and alias != step_alias(node, False, dynamic)[0]:
                self.cpu_only_steps.append(index)
            self.steps.append(StepSpec(tuple(self._id(v) for v in node.inputs),
                                       tuple(self._id(v) for v in node.outputs), alias, axis, offset))
        for value in graph.outputs:
            self._id(value)
        self.tensors = [TensorSpec(i, v.nbytes, pools.get(id(v), "cpu"), v.is_const or id(v) in external,
                                   id(v) in outputs, v.dtype.value, tuple(v.shape))
                        for i, v in enumerate(self.values)]

    def _id(self, value: Value | None) -> int:
        if value is None:
            return -1
        key = id(value)
        if key not in self.ids:
            self.ids[key] = len(self.values)
            self.values.append(value)
        return self.ids[key]

    def lower_bound(self) -> int:
        table = {t.id: t for t in self.tensors}
        last_use = {tid: i for i, step in enumerate(self.steps) for tid in step.inputs}
        aliases, _, overwrites = _resolve_aliases(self.steps, table, last_use)
        buffers, _ = _buffers(self.steps, table, aliases, 256, overwrites)
        return lower_bound(buffers)


def greedy_order(graph: Graph) -> list[Node]:
    """List scheduling: among ready layers run the one whose outputs minus freed inputs is smallest."""
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    pending = {id(n): sum(1 for v in _node_inputs(n) if v.producer() is not None) for n in graph.nodes}
    remaining_uses = {}
    for node in graph.nodes:
        for v in _node_inputs(node):
            remaining_uses[id(v)] = remaining_uses.get(id(v), 0) + 1
    outputs = {id(v) for v in graph.outputs}

    def cost(node: Node) -> int:
        grow = sum(v.nbytes for v in node.outputs)
        freed = sum(v.nbytes for v in set(_node_inputs(node)) if v.producer() is not None
                    and remaining_uses[id(v)] == _node_inputs(node).count(v) and id(v) not in outputs)
        return grow - freed

    ready = [(cost(n), position[id(n)], n) for n in graph.nodes if pending[id(n)] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, _, node = heapq.heappop(ready)
        order.append(node)
        for v in _node_inputs(node):
            remaining_uses[id(v)] -= 1
        touched = []
        for v in node.outputs:
            for user in v.users():
                pending[id(user)] -= sum(1 for u in _node_inputs(user) if u is v)
                if pending[id(user)] == 0:
                    touched.append(user)
        # Costs of ready layers change as inputs get consumed: rebuild the (small) ready heap.
        ready = [(cost(n), position[id(n)], n) for _, _, n in ready] + \
                [(cost(n), position[id(n)], n) for n in touched]
        heapq.heapify(ready)
    return order


def depth_first_order(graph: Graph) -> list[Node]:
    """Post-order from the outputs, visiting the input that needs the most memory first."""
    order, seen = [], set()
    for root in reversed([v.producer() for v in graph.outputs if v.producer() is not None]):
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            producers = [v.producer() for v in _node_inputs(node) if v.producer() is not None]
            for producer in sorted(producers, key=lambda p: sum(v.nbytes for v in p.outputs)):
                if id(producer) not in seen:
                    stack.append((producer, False))
    return order if len(order) == len(graph.nodes) else list(graph.nodes)


def _node_inputs(node: Node) -> list[Value]:
    return [v for v in node.inputs if v is not None]


def choose_schedule(graph: Graph, cpu_kernels: bool = True, keep=()) -> dict:
    """Reorder graph.nodes to the candidate with the lowest peak live memory; report the candidates."""
    candidates = {"model": list(graph.nodes), "greedy": greedy_order(graph), "depth-first": depth_first_order(graph)}
    bounds = {name: ScheduleSpecs(graph, order, cpu_kernels=cpu_kernels, keep=keep).lower_bound()
              for name, order in candidates.items()
              if len(order) == len(graph.nodes)}
    best = min(bounds, key=lambda name: (bounds[name], list(candidates).index(name)))
    graph.nodes = candidates[best]
    return {"order": best, "lower_bound_bytes": bounds}


def plan_graph_memory(specs: ScheduleSpecs, *, reuse: bool = True, streams=None) -> MemoryPlan:
    """The memory plan of a graph in the order ``specs`` was made for (``streams``: its auxiliary streams)."""
    return plan_memory(specs.steps, specs.tensors, reuse=reuse, streams=streams)


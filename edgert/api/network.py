"""``INetworkDefinition``, ``ITensor`` and ``ILayer``: TensorRT's network API as views over edgert's IR graph.

The network owns one ``edgert.ir.graph.Graph``; a tensor is a view of a ``Value`` and a layer a view of a
``Node`` (``add_constant`` is the one layer without a node: the IR keeps constants on their values). A layer
view keeps the arguments TensorRT scripts set (``stride_nd``, ``reshape_dims`` with its 0 and -1, axes
bitmasks ...) and writes them into its node's attrs, resolved against the current input shapes, whenever the
network is refreshed; so a setter that changes a shape after later layers were added, and a build at another
input shape (a profile's probe shapes), both re-infer the graph from the same views.

Dynamic dims (-1 in ``add_input``) are held at a placeholder size while the network is edited; ``shape`` of a
tensor reports -1 for every dim that follows them. The ``add_*`` methods live in ``edgert.api.layers``.
"""

from __future__ import annotations

import copy

import numpy as np

from edgert.api.enums import DataType, TensorFormat, dims
from edgert.errors import GraphError, ShapeError, UnsupportedError
from edgert.ir.graph import Graph, Node, Value
from edgert.ir.kinds import LayerKind
from edgert.ir.shape_inference import infer_node

PLACEHOLDER_DIM = 16          # a dynamic dim's size while the network is edited (even, larger than small kernels)
SECOND_PLACEHOLDER_DIM = 32   # a second size, to find the dims that follow the dynamic ones
_BINDING_TYPES = (DataType.FLOAT, DataType.HALF, DataType.INT8)   # ITensor.dtype of an I/O binding (io_formats)


class ITensor:
    """A view of one IR value (TensorRT's ``ITensor``)."""

    def __init__(self, network: "INetworkDefinition", value: Value):
        self._network = network
        self._value = value

    @property
    def name(self) -> str:
        return self._value.name

    @name.setter
    def name(self, new: str) -> None:
        self._network._rename(self._value, str(new))

    @property
    def shape(self) -> tuple:
        return self._network._shape_of(self._value)

    @shape.setter
    def shape(self, new) -> None:
        if not self.is_network_input:
            raise GraphError(f"tensor {self.name!r}: only a network input's shape can be set (the others are "
                             "inferred)")
        self._network._set_input_shape(self._value, dims(new))

    @property
    def dtype(self) -> DataType:
        bound = self._network._io_formats.get(id(self._value))
        if bound is not None:
            return bound
        self._network._refresh()
        return DataType.of(self._value.dtype)

    @dtype.setter
    def dtype(self, new) -> None:
        """A network output's binding type (FLOAT, HALF, INT8), or a network input's: for a float32 input, HALF
        and INT8 set the binding type (``edgert.io_formats``: the plan converts, or reads it as it is), as
        TensorRT does; any other type retypes the input itself."""
        new = DataType(new)
        if self.is_network_output or (self.is_network_input and new in _BINDING_TYPES
                                      and self._network._float_input(self._value)):
            if new not in _BINDING_TYPES:
                raise GraphError(f"tensor {self.name!r}: an output binding is FLOAT, HALF or INT8, not {new.name}")
            self._network._io_formats[id(self._value)] = new
            return
        if not self.is_network_input:
            raise GraphError(f"tensor {self.name!r}: only a network input's or output's dtype can be set; add a "
                             "cast layer")
        self._network._io_formats.pop(id(self._value), None)
        self._value.dtype = new.ir
        self._network._changed()

    @property
    def allowed_formats(self) -> int:
        """Bit mask of ``TensorFormat`` members the binding may take (default: LINEAR). edgert binds LINEAR when
        it is allowed, else the allowed layout of the lowest value (``edgert.io_formats``)."""
        return self._network._allowed_formats.get(id(self._value), 1 << int(TensorFormat.LINEAR))

    @allowed_formats.setter
    def allowed_formats(self, mask) -> None:
        if not (self.is_network_input or self.is_network_output):
            raise GraphError(f"tensor {self.name!r}: allowed_formats applies to network inputs and outputs")
        known = sum(1 << int(f) for f in TensorFormat)
        if not int(mask) or int(mask) & ~known:
            raise GraphError(f"tensor {self.name!r}: allowed_formats {int(mask):#x} names no TensorFormat edgert "
                             f"binds; use a mask of {', '.join(f.name for f in TensorFormat)}")
        self._network._allowed_formats[id(self._value)] = int(mask)

    @property
    def is_network_input(self) -> bool:
        return any(v is self._value for v in self._network._graph.inputs)

    @property
    def is_network_output(self) -> bool:
        return any(v is self._value for v in self._network._graph.outputs)

    def set_dynamic_range(self, min: float, max: float) -> bool:   # noqa: A002 - TensorRT's argument names
        """int8 without calibration: the tensor's range, symmetric as TensorRT uses it (scale = max(|min|, |max|)
        / 127)."""
        if not float(min) <= float(max):
            raise ValueError(f"tensor {self.name!r}: dynamic range needs min <= max, found {min}, {max}")
        self._network._dynamic_ranges[self._value.name] = (float(min), float(max))
        return True

    @property
    def dynamic_range(self):
        return self._network._dynamic_ranges.get(self._value.name)

    def reset_dynamic_range(self) -> None:
        self._network._dynamic_ranges.pop(self._value.name, None)

    def __eq__(self, other) -> bool:
        return isinstance(other, ITensor) and other._value is self._value

    def __hash__(self) -> int:
        return id(self._value)

    def __repr__(self) -> str:
        return f"ITensor({self.name!r}, {self.dtype.name}, {self.shape})"


class ILayer:
    """A view of one IR node. Subclasses keep TensorRT's arguments and turn them into attrs in ``_resolve``."""

    kind: LayerKind | None = None

    def __init__(self, network: "INetworkDefinition", node: Node | None):
        self._network = network
        self._node = node
        self._precision = None
        self._output_types: dict[int, DataType] = {}

    # -- what TensorRT scripts read and set --------------------------------------------------------
    @property
    def type(self):
        from edgert.api.layers import LayerType
        return LayerType.CONSTANT if self._node is None else LayerType[self._node.kind.name]

    @property
    def name(self) -> str:
        return self._node.name

    @name.setter
    def name(self, new: str) -> None:
        new = str(new)
        if new != self._node.name:
            if new in self._network._graph._names:
                raise GraphError(f"layer name {new!r} is already used in this network; names must be unique")
            self._network._graph._names.add(new)
            self._node.name = new
            self._node.origin = [new]
            self._network._changed()

    @property
    def precision(self) -> DataType:
        return self._precision if self._precision is not None else DataType.FLOAT

    @precision.setter
    def precision(self, dtype) -> None:
        self._precision = DataType(dtype)

    @property
    def precision_is_set(self) -> bool:
        return self._precision is not None

    def reset_precision(self) -> None:
        self._precision = None

    def set_output_type(self, index: int, dtype) -> None:
        self._output_types[int(index)] = DataType(dtype)

    def get_output_type(self, index: int) -> DataType:
        return self._output_types.get(int(index)) or self.get_output(index).dtype

    def output_type_is_set(self, index: int) -> bool:
        return int(index) in self._output_types

    @property
    def num_inputs(self) -> int:
        return len(self._node.inputs)

    def get_input(self, index: int) -> ITensor | None:
        value = self._node.inputs[index]
        return self._network._tensor(value) if value is not None else None

    def set_input(self, index: int, tensor: ITensor) -> None:
        """Replace input ``index`` (TensorRT's extra shape-tensor inputs, e.g. a shuffle's dynamic reshape
        dims, are not supported: edgert resolves shapes at build time)."""
        if not 0 <= int(index) < len(self._node.inputs):
            raise UnsupportedError(f"layer {self.name!r}: set_input({index}) adds an input the {self._node.kind.value}"
                                   f" layer does not have here (it takes {len(self._node.inputs)}); shape tensors "
                                   "as layer inputs are not supported, set the layer's attributes instead")
        self._node.set_input(int(index), tensor._value)
        self._network._changed()

    @property
    def num_outputs(self) -> int:
        return len(self._node.outputs)

    def get_output(self, index: int) -> ITensor:
        if not 0 <= index < self.num_outputs:
            raise IndexError(f"layer {self.name!r} has {self.num_outputs} output(s), no output {index}")
        return self._network._tensor(self._node.outputs[index])

    # -- edgert's side -----------------------------------------------------------------------------
    def _param(self, name: str, value) -> None:
        """Set a TensorRT argument and have the network re-infer shapes on next use."""
        setattr(self, "_" + name, value)
        self._network._changed()

    def _resolve(self) -> dict:
        """The node's attrs from the layer's arguments and its inputs' current shapes (generic: unchanged)."""
        return self._node.attrs

    def _sync(self) -> None:
        self._node.attrs = self._resolve()

    def _input_shape(self, index: int = 0) -> tuple:
        return self._node.inputs[index].shape

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class IConstantLayer(ILayer):
    """``add_constant``: the IR keeps constants on values, so this layer has no node."""

    def __init__(self, network: "INetworkDefinition", value: Value):
        super().__init__(network, None)
        self._value = value
        self._name = value.name

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, new: str) -> None:
        self._name = str(new)

    @property
    def num_inputs(self) -> int:
        return 0

    @property
    def num_outputs(self) -> int:
        return 1

    def get_output(self, index: int) -> ITensor:
        if index != 0:
            raise IndexError(f"constant layer {self.name!r} has one output, no output {index}")
        return self._network._tensor(self._value)

    @property
    def weights(self):
        return self._value.const

    @property
    def shape(self) -> tuple:
        return self._value.shape

    def _sync(self) -> None:
        pass


class NetworkBase:
    """State and bookkeeping of ``INetworkDefinition`` (the ``add_*`` methods come from ``LayerAdders``)."""

    def __init__(self, flags: int = 0, graph: Graph | None = None):
        self.flags = int(flags)
        self._graph = graph if graph is not None else Graph("network")
        self._layers: list[ILayer] = []
        self._tensors: dict[int, ITensor] = {}
        self._declared: dict[int, tuple] = {}    # input value id -> shape as given, -1 for dynamic dims
        self._dynamic_ranges: dict[str, tuple[float, float]] = {}
        self._io_formats: dict[int, DataType] = {}   # value id -> binding type set through ITensor.dtype
        self._allowed_formats: dict[int, int] = {}   # value id -> ITensor.allowed_formats mask
        self._dirty = False
        self._placeholder = PLACEHOLDER_DIM
        self.name = "network"
        self.onnx_model = None   # set by OnnxParser: a dynamic ONNX network builds through the ONNX path
        self._edited_after_parse = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    # -- TensorRT's queries ------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]

    @property
    def num_inputs(self) -> int:
        return len(self._graph.inputs)

    def get_input(self, index: int) -> ITensor:
        return self._tensor(self._graph.inputs[index])

    @property
    def num_outputs(self) -> int:
        return len(self._graph.outputs)

    def get_output(self, index: int) -> ITensor:
        return self._tensor(self._graph.outputs[index])

    @property
    def has_implicit_batch_dimension(self) -> bool:
        return False

    def add_input(self, name: str, dtype, shape) -> ITensor:
        declared = dims(shape, f"shape of input {name!r}")
        if any(d < -1 for d in declared):
            raise ShapeError(f"input {name!r}: shape {declared} has a dim below -1 (-1 marks a dynamic dim)")
        value = self._graph.add_input(str(name), DataType(dtype).ir, self._at_placeholder(declared))
        self._declared[id(value)] = declared
        self._changed()
        return self._tensor(value)

    def mark_output(self, tensor: ITensor) -> None:
        if tensor.is_network_output:
            return
        if tensor.is_network_input:   # one name would then be an input and an output binding (TensorRT refuses too)
            raise GraphError(f"network input {tensor.name!r} cannot also be an output; mark the output of "
                             "network.add_identity(tensor) instead")
        self._graph.add_output(tensor._value, tensor.name)
        self._changed()

    def unmark_output(self, tensor: ITensor) -> None:
        keep = [(v, n) for v, n in zip(self._graph.outputs, self._graph.output_names) if v is not tensor._value]
        self._graph.outputs = [v for v, _ in keep]
        self._graph.output_names = [n for _, n in keep]
        self._changed()

    def remove_tensor(self, tensor: ITensor) -> None:
        if tensor._value.uses() or tensor.is_network_output:
            raise GraphError(f"tensor {tensor.name!r} is still used; unmark it or remove its readers first")

    # -- edgert's side -----------------------------------------------------------------------------
    def _set_const(self, node: Node, slot: int, array) -> None:
        """Input ``slot`` of ``node`` becomes a constant holding ``array`` (kept when it already does)."""
        while len(node.inputs) <= slot:
            node.append_input(None)
        current = node.inputs[slot]
        if current is not None and current.is_const and current.const.shape == array.shape and \
                current.const.dtype == array.dtype and np.array_equal(current.const, array):
            return
        node.set_input(slot, self._graph.constant(np.ascontiguousarray(array), name=f"{node.name}_w{slot}"))

    def _tensor(self, value: Value) -> ITensor:
        view = self._tensors.get(id(value))
        if view is None or view._value is not value:
            view = self._tensors[id(value)] = ITensor(self, value)
        return view

    def _changed(self) -> None:
        self._dirty = True
        if self.onnx_model is not None:
            self._edited_after_parse = True

    def _at_placeholder(self, declared: tuple) -> tuple:
        return tuple(self._placeholder if d < 0 else d for d in declared)

    def _set_input_shape(self, value: Value, declared: tuple) -> None:
        self._declared[id(value)] = declared
        value.shape = self._at_placeholder(declared)
        self._changed()

    def _float_input(self, value: Value) -> bool:
        return value.dtype == DataType.FLOAT.ir

    def io_format_options(self) -> dict:
        """``input_formats`` / ``output_formats`` build options of the binding types set through ITensor.dtype."""
        names = {DataType.FLOAT: "fp32", DataType.HALF: "fp16", DataType.INT8: "int8"}
        options = {}
        for key, values in (("input_formats", self._graph.inputs), ("output_formats", self._graph.outputs)):
            names_of = dict(zip(map(id, self._graph.outputs), self._graph.output_names)) if key == "output_formats" \
                else {id(v): v.name for v in values}
            formats = {}
            for value in values:
                dtype, mask = self._io_formats.get(id(value)), self._allowed_formats.get(id(value))
                if dtype is None and mask is None:
                    continue
                layout = "linear"
                if mask is not None and not mask & (1 << int(TensorFormat.LINEAR)):
                    layout = next(f.layout for f in sorted(TensorFormat) if mask & (1 << int(f)))
                formats[names_of[id(value)]] = f"{names[dtype or DataType.FLOAT]}:{layout}"
            if formats:
                options[key] = formats
        return options

    def _rename(self, value: Value, new: str) -> None:
        if new == value.name:
            return
        if new in self._graph._names:
            raise GraphError(f"tensor name {new!r} is already used in this network; names must be unique")
        self._graph._names.add(new)
        if value.name in self._dynamic_ranges:
            self._dynamic_ranges[new] = self._dynamic_ranges.pop(value.name)
        self._graph.output_names = [new if v is value else n for v, n in zip(self._graph.outputs,
                                                                              self._graph.output_names)]
        value.name = new
        self._changed()

    def _refresh(self) -> None:
        """Re-resolve every layer's attrs and re-infer every shape, in order, when something changed."""
        if not self._dirty:
            return
        for layer in self._layers:
            if layer._node is None:
                continue
            layer._sync()
            try:
                infer_node(layer._node)
            except ShapeError as e:
                raise ShapeError(f"{e} (while re-inferring the network after a change)") from e
        self._dirty = False

    @property
    def dynamic_inputs(self) -> list[Value]:
        return [v for v in self._graph.inputs if any(d < 0 for d in self._declared.get(id(v), ()))]

    def input_dims(self) -> dict[str, list | None]:
        """{input name: dims, None where dynamic} (what edgert.profiles checks profiles against)."""
        return {v.name: [None if d < 0 else d for d in self._declared.get(id(v), v.shape)] for v in self._graph.inputs}

    def _with_placeholder(self, size: int) -> dict[int, tuple]:
        """Every value's shape with the dynamic dims at ``size``."""
        self._placeholder = size
        for value in self.dynamic_inputs:
            value.shape = self._at_placeholder(self._declared[id(value)])
        self._dirty = True
        try:
            self._refresh()
            return {id(v): v.shape for v in self._graph.values()}
        finally:
            self._placeholder = PLACEHOLDER_DIM

    def _shape_of(self, value: Value) -> tuple:
        if id(value) in self._declared:
            return self._declared[id(value)]
        if not self.dynamic_inputs or self.onnx_model is not None:   # parsed: dynamic dims were imported at 1
            self._refresh()
            return value.shape
        other = self._with_placeholder(SECOND_PLACEHOLDER_DIM)[id(value)]
        first = self._with_placeholder(PLACEHOLDER_DIM)[id(value)]
        return tuple(a if a == b else -1 for a, b in zip(first, other)) if len(first) == len(other) else first

    def graph_at(self, shapes: dict | None = None) -> Graph:
        """A copy of the graph with the inputs at ``shapes`` ({name: dims}; dynamic inputs need one), shapes
        re-inferred, outputs given their own layer as the importer does; the network itself is left as it was."""
        shapes = dict(shapes or {})
        for value in self._graph.inputs:
            declared = self._declared.get(id(value), value.shape)
            given = tuple(int(d) for d in shapes.pop(value.name, declared))
            if any(d < 0 for d in given):
                raise ShapeError(f"network input {value.name!r} has dynamic dims {declared}; add an optimization "
                                 "profile for it (builder.create_optimization_profile, config.add_optimization_"
                                 "profile)")
            if len(given) != len(declared) or any(d >= 0 and d != g for d, g in zip(declared, given)):
                raise ShapeError(f"network input {value.name!r}: shape {given} does not fit its declared {declared}")
            value.shape = given
        if shapes:
            raise ShapeError(f"unknown network input {next(iter(shapes))!r}; the inputs are: "
                             f"{', '.join(v.name for v in self._graph.inputs)}")
        if not self._graph.outputs:
            raise GraphError("the network has no outputs; mark at least one with network.mark_output(tensor)")
        self._dirty = True
        try:
            self._refresh()
            graph = _copy_graph(self._graph)
        finally:
            for value in self._graph.inputs:
                value.shape = self._at_placeholder(self._declared.get(id(value), value.shape))
            self._dirty = True
        _own_outputs(graph)
        return graph


def _copy_graph(graph: Graph) -> Graph:
    """A deep copy that shares the (read-only in the builder) constant arrays."""
    memo = {}
    for value in graph.values():
        if value.is_const:
            memo[id(value.const)] = value.const
    return copy.deepcopy(graph, memo)


def _own_outputs(graph: Graph) -> None:
    """Outputs that are inputs, constants or another output's tensor get an Identity copy (as the importer)."""
    from edgert.ir.shape_inference import infer_node as infer

    seen: set[int] = set()
    for index, value in enumerate(list(graph.outputs)):
        if id(value) in seen or value.producer() is None:
            name = graph.output_names[index]
            node = graph.add_node(LayerKind.IDENTITY, [value], name=f"{name}_copy", origin=[name])
            infer(node)
            graph.outputs[index] = node.outputs[0]
        seen.add(id(graph.outputs[index]))

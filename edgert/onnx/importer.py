"""ONNX → edgert IR.

Reads a model (path, bytes or ModelProto), resolves graph input shapes (static dims from the model,
dynamic dims from ``shapes``), turns initializers into constants (graph inputs that shadow an
initializer become constants, as for inference), and maps every node through its registered op
importer. Layers whose inputs are all constant are evaluated on the spot with the CPU kernels, so
shape sub-graphs (Shape → Gather → Concat → Reshape ...) collapse to constants once shapes are static.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import onnx

from edgert.errors import ModelError, ShapeError, UnsupportedError
from edgert.ir.graph import Graph
from edgert.ir.kinds import LayerKind
from edgert.ir.limits import check_shape
from edgert.onnx.context import ImportContext, onnx_dtype, tensor_to_array
from edgert.onnx.graph_order import ordered_nodes
from edgert.onnx.registry import importer_for, supported_ops

MIN_OPSET, MAX_OPSET = 7, 28
DEFAULT_DOMAINS = ("", "ai.onnx")


def load_model(model) -> onnx.ModelProto:
    """Accept a path, bytes or ModelProto; raise ModelError for missing, empty or non-ONNX files."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        data, where = bytes(model), "model bytes"
    else:
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ModelError(f"model file not found: {path}")
        if os.path.isdir(path):
            raise ModelError(f"model path is a directory, expected an .onnx file: {path}")
        with open(path, "rb") as f:
            data, where = f.read(), path
    if not data:
        raise ModelError(f"{where} is empty, expected an ONNX model")
    try:
        proto = onnx.ModelProto.FromString(data)
    except Exception as e:
        raise ModelError(f"{where} is not an ONNX model (protobuf parse failed: {str(e).splitlines()[0]})") from e
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{where} is not an ONNX model (it holds no graph); is it truncated or another format?")
    if not isinstance(model, (bytes, bytearray)) and proto.graph.initializer:
        base = os.path.dirname(os.fspath(model))
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, base)
        except Exception as e:
            raise ModelError(f"{where}: cannot load external tensor data: {e}") from e
    return proto


def default_opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return entry.version
    raise ModelError("the model imports no version of the default ONNX opset (opset_import is missing or "
                     "names only other domains); is the file truncated?")


def import_model(model, shapes: Mapping[str, Sequence[int]] | None = None, initializer_cache: dict | None = None) -> Graph:
    """``initializer_cache`` ({name: read-only array}) lets several imports of one model (the probe shapes of a
    profile build) convert each initializer once; read-only, so a rewrite that wrote into one would fail loudly."""
    proto = load_model(model)
    opset = default_opset(proto)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError(f"model uses ONNX opset {opset}; edgert imports opsets {MIN_OPSET}-{MAX_OPSET} "
                               "(convert it with onnx.version_converter)")
    check_supported_ops(proto.graph, opset)
    graph = Graph(proto.graph.name or "graph")
    ctx = ImportContext(graph, opset)
    _import_constants_and_inputs(proto.graph, ctx, dict(shapes or {}), initializer_cache)
    for node in ordered_nodes(proto.graph):   # ModelError on two writers of a tensor or a cycle
        _import_node(ctx, node)
    _bind_outputs(proto.graph, ctx)
    _drop_dead_nodes(graph)
    return graph


def model_input_dims(model) -> dict[str, list | None]:
    """{graph input name: its dims (an int where static, None where dynamic), or None with no shape} (for profiles)."""
    g = load_model(model).graph
    initializers = {t.name for t in g.initializer}
    dims = {}
    for info in g.input:
        if info.name in initializers:
            continue
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            dims[info.name] = None
            continue
        dims[info.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                           for d in tensor_type.shape.dim]
    return dims


def _import_constants_and_inputs(g: onnx.GraphProto, ctx: ImportContext, shapes: dict, cache: dict | None) -> None:
    initializers = {t.name: t for t in g.initializer}
    for tensor in g.initializer:
        array = cache.get(tensor.name) if cache is not None else None
        if array is None:
            array = tensor_to_array(tensor, f"initializer {tensor.name!r}")
            if cache is not None:
                array.flags.writeable = False
                cache[tensor.name] = array
        ctx.values[tensor.name] = ctx.constant(array, name=tensor.name)
    real_inputs = [i for i in g.input if i.name not in initializers]
    known = {i.name for i in real_inputs}
    for name in shapes:
        if name not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise ShapeError(f"--shape names unknown input {name!r}; the model's inputs are: {choices}")
    for info in real_inputs:
        ctx.values[info.name] = ctx.graph.add_input(info.name, *_input_type(info, shapes.get(info.name)))


def _input_type(info: onnx.ValueInfoProto, given: Sequence[int] | None):
    where = f"graph input {info.name!r}"
    if not info.type.HasField("tensor_type"):
        raise UnsupportedError(f"{where} is not a tensor (sequence/map/optional inputs are not supported)")
    tensor_type = info.type.tensor_type
    dtype = onnx_dtype(tensor_type.elem_type, where)
    if not tensor_type.HasField("shape"):
        if given is None:
            raise ShapeError(f"{where} has no shape in the model; give one with --shape {info.name}=1x3x224x224")
        return dtype, tuple(given)
    # A dim with a value is static (0 included: empty tensors are legal); dim_param or nothing is dynamic.
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim]
    _check_model_dims(where, dims)
    if given is None:
        dynamic = [d for d in dims if not isinstance(d, int)]
        if dynamic:
            shown = "x".join(str(d) for d in dims)
            example = "x".join(str(d) if isinstance(d, int) and d >= 0 else "1" for d in dims)
            raise ShapeError(f"{where} has dynamic dims ({shown}); give a static shape, e.g. "
                             f"--shape {info.name}={example} (shapes={{{info.name!r}: ...}} in Python)")
        check_shape(dims, dtype.itemsize, where)
        return dtype, tuple(dims)
    given = tuple(int(d) for d in given)
    if len(given) != len(dims):
        raise ShapeError(f"{where}: given shape {given} has rank {len(given)}, the model says rank {len(dims)} "
                         f"({'x'.join(str(d) for d in dims)})")
    for axis, (model_dim, dim) in enumerate(zip(dims, given)):
        if dim < 0:
            raise ShapeError(f"{where}: given shape {given} has a negative dim at axis {axis}")
        if isinstance(model_dim, int) and model_dim >= 0 and model_dim != dim:
            raise ShapeError(f"{where}: given shape {given} contradicts the model's static dim {model_dim} "
                             f"at axis {axis}")
    check_shape(given, dtype.itemsize, f"{where} (given shape)")
    return dtype, given


def check_supported_ops(g: onnx.GraphProto, opset: int, names_per_op: int = 3) -> None:
    """One UnsupportedError naming every node whose op edgert cannot import, grouped by op (a short line)."""
    unsupported: dict[str, list[str]] = {}
    for index, node in enumerate(g.node):
        if node.domain not in DEFAULT_DOMAINS or importer_for(node.op_type) is None:
            op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}:{node.op_type}"
            unsupported.setdefault(op, []).append(node.name or f"#{index}")
    if not unsupported:
        return
    groups = []
    for op, names in unsupported.items():
        shown = ", ".join(repr(n) for n in names[:names_per_op]) + (f", +{len(names) - names_per_op} more"
                                                                     if len(names) > names_per_op else "")
        groups.append(f"{op} x{len(names)} ({shown})")
    count = sum(len(names) for names in unsupported.values())
    raise UnsupportedError(f"{count} node{'s' if count > 1 else ''} use ops edgert does not support (opset {opset}): "
                           f"{'; '.join(groups)}; docs/conformance.md lists the supported ops")


def _check_model_dims(where: str, dims: list) -> None:
    """A negative static dim is invalid (not dynamic: dynamic dims have a name or no value)."""
    for axis, dim in enumerate(dims):
        if isinstance(dim, int) and dim < 0:
            raise ShapeError(f"{where}: the model gives dim {dim} at axis {axis}, which is invalid (a dim is >= 0, "
                             "or a name such as 'N' for a dynamic dim); fix the model's input shape")


def _import_node(ctx: ImportContext, node: onnx.NodeProto) -> None:
    ctx.node = node
    if node.domain not in DEFAULT_DOMAINS:
        raise UnsupportedError(f"{ctx.where}: op domain {node.domain!r} is not supported (only the default ONNX "
                               "domain is)")
    importer = importer_for(node.op_type)
    if importer is None:
        raise UnsupportedError(f"{ctx.where}: op {node.op_type} (opset {ctx.opset}) is not supported; "
                               f"supported ops: {', '.join(supported_ops())}")
    outputs = importer(ctx, node)
    if len(outputs) < len([o for o in node.output if o]):
        raise UnsupportedError(f"{ctx.where}: only the first {len(outputs)} output(s) are supported")
    for name, value in zip(node.output, outputs):
        if name and value is not None:
            ctx.values[name] = value
    ctx.node = None


def _bind_outputs(g: onnx.GraphProto, ctx: ImportContext) -> None:
    graph = ctx.graph
    bound: set[int] = set()
    for info in g.output:
        value = ctx.values.get(info.name)
        if value is None:
            raise ModelError(f"graph output {info.name!r} is not produced by any node")
        # An output that is a graph input, a constant, or another output's tensor gets its own copy,
        # so every output owns its buffer and its name.
        if id(value) in bound or value.producer() is None:
            node = graph.add_node(LayerKind.IDENTITY, [value], name=f"{info.name}_copy", origin=[info.name])
            node.outputs[0].dtype, node.outputs[0].shape = value.dtype, value.shape
            value = node.outputs[0]
        bound.add(id(value))
        graph.add_output(value, info.name)


def _drop_dead_nodes(graph: Graph) -> None:
    live = {id(v) for v in graph.outputs}
    keep = []
    for node in reversed(graph.nodes):
        if any(id(v) in live for v in node.outputs):
            keep.append(node)
            live.update(id(v) for v in node.inputs if v is not None)
        else:
            node._detach()
    graph.nodes = keep[::-1]

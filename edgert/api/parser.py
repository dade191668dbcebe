"""``OnnxParser``: fills an ``INetworkDefinition`` from an ONNX model through edgert's importer.

The network then holds the importer's IR graph (layer views over its nodes), so a parsed network and one
built with ``add_*`` are the same kind of graph. The model is kept: a network with dynamic input dims is
imported at its profile's shapes when it is built (``edgert.dynamic``), and while it is edited the dynamic
dims stand at 1. Errors are recorded, as TensorRT does: ``parse`` returns False and ``get_error(i)`` says
which node, which op and why.
"""

from __future__ import annotations

import os

from edgert.api.network import ILayer
from edgert.api.logger import report
from edgert.errors import EdgeRTError


class ParserError:
    """One parse error: ``node()`` (index in the ONNX graph, -1 when not a node's), ``node_name()``,
    ``node_operator()``, ``desc()``, ``code()``."""

    def __init__(self, desc: str, node: int = -1, node_name: str = "", op: str = ""):
        self._desc, self._node, self._name, self._op = desc, node, node_name, op

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op

    def code(self) -> int:
        return 8 if "not supported" in self._desc or "does not support" in self._desc else 2

    def __str__(self) -> str:
        where = f"node {self._node} ({self._op} {self._name!r}): " if self._node >= 0 else ""
        return f"{where}{self._desc}"


class OnnxParser:
    def __init__(self, network, logger=None):
        self.network = network
        self.logger = logger
        self._errors: list[ParserError] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def supports_operator(self, op_name: str) -> bool:
        from edgert.onnx.registry import importer_for
        return importer_for(op_name) is not None

    def parse_from_file(self, model: str) -> bool:
        try:
            with open(os.fspath(model), "rb") as f:
                data = f.read()
        except OSError as e:
            return self._fail(ParserError(f"cannot read {model}: {e.strerror}"))
        return self.parse(data, path=os.path.dirname(os.path.abspath(model)))

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        from edgert.onnx.importer import import_model, load_model, model_input_dims

        if self.network.num_layers or self.network.num_inputs:
            return self._fail(ParserError("OnnxParser fills an empty network; create a new one with "
                                          "builder.create_network()"))
        try:
            proto = load_model(bytes(model))
            if path is not None and proto.graph.initializer:
                onnx.external_data_helper.load_external_data_for_model(proto, path)
            self._check_ops(proto)
            dims = model_input_dims(proto)
            placeholder = {name: [1 if d is None else d for d in shape] for name, shape in dims.items()
                           if shape is not None and None in shape}
            graph = import_model(proto, placeholder)
        except EdgeRTError as e:
            return self._fail(self._locate(str(e), proto if "proto" in locals() else None))
        self._adopt(graph, proto, dims)
        return True

    def _check_ops(self, proto) -> None:
        from edgert.onnx.registry import importer_for

        found = False
        for index, node in enumerate(proto.graph.node):
            if node.domain not in ("", "ai.onnx") or importer_for(node.op_type) is None:
                self._errors.append(ParserError(f"op {node.op_type} is not supported by edgert (docs/conformance.md "
                                                "lists the supported ops)", index, node.name, node.op_type))
                found = True
        if found:
            raise EdgeRTError(f"{self.num_errors} node(s) use unsupported ops")

    def _locate(self, message: str, proto) -> ParserError:
        """The error, with the ONNX node it names when the importer's message names one."""
        if proto is not None:
            for index, node in enumerate(proto.graph.node):
                label = node.name or (node.output[0] if node.output else "")
                if label and f"{node.op_type} node {label!r}" in message:
                    return ParserError(message, index, node.name, node.op_type)
        return ParserError(message)

    def _fail(self, error: ParserError) -> bool:
        if not self._errors or self._errors[-1].desc() != error.desc():
            if not (self._errors and error.desc().endswith("use unsupported ops")):
                self._errors.append(error)
        for item in self._errors:
            report(self.logger, 1, f"OnnxParser: {item}")
        return False

    def _adopt(self, graph, proto, dims: dict) -> None:
        network = self.network
        network._graph = graph
        network._layers = [ILayer(network, node) for node in graph.nodes]
        network._declared = {id(v): tuple(-1 if d is None else d for d in dims[v.name]) if dims.get(v.name) else
                             v.shape for v in graph.inputs}
        network._dirty = False
        network.onnx_model = proto
        network._edited_after_parse = False

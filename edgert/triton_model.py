"""Triton Python-backend model that serves an edgert plan (copied as ``<model>/<version>/model.py``).

``initialize`` loads the plan beside this file once per model instance and creates its execution context.
``execute`` answers a batch of requests: requests whose inputs have the same per-sample shapes are stacked
along the batch dim (when the model batches) and run together, and the outputs are split back per request.
A request that is wrong (missing input, dtype or shape the plan does not take) gets a TritonError naming what
was wrong; the other requests of the batch are still answered. Needs only edgert's runtime (NumPy, msgpack).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from edgert.runtime import load

        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        self.engine = load(os.path.join(here, parameters.get("plan_file", "model.plan")),
                           device=parameters.get("device", "cpu"))
        self.context = self.engine.create_execution_context()
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [(b.name, b.dtype) for b in self.engine.inputs]

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except ValueError as e:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
                continue
            # without a batch dim every request runs alone; with one, requests of equal per-sample shapes stack
            key = tuple(a.shape[1:] for a in arrays) if self.batched else index
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            for index, response in self._run(members):
                responses[index] = response
        return responses

    def _read(self, request):
        arrays = []
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            array = _array(tensor)
            if array.dtype != dtype:
                raise ValueError(f"input {name!r}: expected {dtype.name}, got {array.dtype.name}")
            arrays.append(array)
        if self.batched and len({a.shape[0] for a in arrays}) != 1:
            raise ValueError("inputs disagree on the batch size: " + ", ".join(
                f"{name} {a.shape[0]}" for (name, _), a in zip(self.inputs, arrays)))
        return arrays

    def _run(self, members):
        """Run the stacked requests of one shape group; (request index, response) for each."""
        from edgert.errors import EdgeRTError

        feeds = {name: np.concatenate([arrays[i] for _, arrays in members]) if len(members) > 1 else members[0][1][i]
                 for i, (name, _) in enumerate(self.inputs)}
        try:
            outputs = self.context.execute(feeds)
        except EdgeRTError as e:
            if len(members) > 1:   # one request's shape may be the culprit: answer each on its own
                return [pair for member in members for pair in self._run([member])]
            error = pb_utils.TritonError(str(e))
            return [(index, pb_utils.InferenceResponse(error=error)) for index, _ in members]
        answered, start = [], 0
        for index, arrays in members:
            count = arrays[0].shape[0] if self.batched else 1
            tensors = [_tensor(name, out[start:start + count] if self.batched else out)
                       for name, out in outputs.items()]
            answered.append((index, pb_utils.InferenceResponse(output_tensors=tensors)))
            start += count
        return answered

    def finalize(self):
        self.context = None
        self.engine = None


def _tensor(name, array):
    """An output tensor for Triton, passed by DLPack: the backend's own NumPy conversion reads NumPy 2's dtype
    descriptors wrongly (it was compiled against NumPy 1) and would send empty tensors."""
    return pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(array))


def _array(tensor):
    """An input tensor as NumPy, by DLPack (see _tensor); a copy, since the request's memory is Triton's."""
    return np.array(np.from_dlpack(tensor), copy=True)

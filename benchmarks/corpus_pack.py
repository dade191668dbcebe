"""Pack the corpus small enough to carry to a machine with no exporters and no network (the GPU run).

The corpus models have random weights anyway, so a packed model keeps its graph and every small tensor
exactly and drops the data of its large weights (float tensors of at least ``--min-elements`` elements
that feed a Conv, ConvTranspose, Gemm or MatMul, that an LSTM, GRU or RNN uses as W or R, or that a
Gather reads as its table; initializers or Constant nodes): each such tensor
keeps its name, type and shape, and its mean and standard deviation go into the model's metadata.
``load()`` draws them again, normally distributed with that mean and deviation, from a seed made of the
model's and the tensor's names: the same values on every machine, and activations in the ranges of the
exported weights. The whole 1 GB corpus packs into a few MB.

    python benchmarks/corpus_pack.py --cache /work/corpus-cache --out corpus-packed [--only NAME ...]

``benchmarks/corpus.py --cache corpus-packed`` then reads the packed files (``load()`` unpacks them in
memory); onnxruntime and edgert both run the unpacked model, so the comparison is as valid as on the
exported weights (the errors differ from the table of the exported ones only by the weights' draw).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib

import numpy as np

METADATA_KEY = "edgert_corpus_packed"   # {tensor name: [mean, std]} of the dropped weights
WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1, 2), "MatMul": (0, 1), "Gather": (0,),
                 "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}


def weight_names(model) -> set[str]:
    """Names of the tensors that feed a weight input of a Conv, ConvTranspose, Gemm, MatMul or Gather."""
    names: set[str] = set()
    for node in model.graph.node:
        for index in WEIGHT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index]:
                names.add(node.input[index])
    return names


def _weight_tensors(model, weights: set[str]):
    """(name, TensorProto) of each initializer and Constant node value named in ``weights``."""
    for tensor in model.graph.initializer:
        if tensor.name in weights:
            yield tensor.name, tensor
    for node in model.graph.node:   # paddle2onnx writes its weights as Constant nodes
        if node.op_type == "Constant" and node.output[0] in weights:
            for attribute in node.attribute:
                if attribute.name == "value":
                    yield node.output[0], attribute.t


def pack_model(model, min_elements: int = 1024):
    """``model`` with the data of its large float weights dropped and their statistics in its metadata."""
    import onnx
    from onnx import numpy_helper
    dropped = {}
    for name, tensor in _weight_tensors(model, weight_names(model)):
        if tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"tensor {name!r} has external data; save the model with it inline")
        array = numpy_helper.to_array(tensor)
        if array.size < min_elements:
            continue
        dropped[name] = [float(array.mean(dtype=np.float64)), float(array.std(dtype=np.float64))]
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(dropped)
    return model


def _seed(model_name: str, tensor_name: str) -> int:
    return zlib.crc32(f"{model_name}/{tensor_name}".encode())


def unpack_model(model, model_name: str):
    """A packed model with its dropped weights drawn again (in place); other models are returned as they are."""
    from onnx import numpy_helper
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        return model
    stats = json.loads(props[METADATA_KEY])
    for name, tensor in list(_weight_tensors(model, set(stats))):
        mean, std = stats[name]
        rng = np.random.default_rng(_seed(model_name, name))
        values = (rng.standard_normal(tuple(tensor.dims)) * std + mean).astype(np.float32)
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return model


def load(path: str):
    """The ONNX model at ``path``, unpacked when it is a packed one."""
    import onnx
    model = onnx.load(path)
    return unpack_model(model, os.path.splitext(os.path.basename(path))[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="/work/corpus-cache", help="the exported models (.onnx files)")
    parser.add_argument("--out", required=True, help="folder for the packed models")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these models only")
    parser.add_argument("--min-elements", type=int, default=1024, help="smallest weight dropped (default 1024)")
    args = parser.parse_args(argv)
    import onnx
    names = args.only or sorted(f[:-5] for f in os.listdir(args.cache) if f.endswith(".onnx"))
    missing = [n for n in names if not os.path.exists(os.path.join(args.cache, f"{n}.onnx"))]
    if missing:
        print(f"corpus_pack: error: not in {args.cache}: {', '.join(missing)}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name in names:
        model = pack_model(onnx.load(os.path.join(args.cache, f"{name}.onnx")), args.min_elements)
        path = os.path.join(args.out, f"{name}.onnx")
        onnx.save(model, path)
        total += os.path.getsize(path)
        print(f"{name}: {os.path.getsize(path) / 2**20:.2f} MiB", file=sys.stderr)
    print(f"{len(names)} models, {total / 2**20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

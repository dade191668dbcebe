"""Pack the corpus small enough to carry to a machine with no exporters and no network (the GPU run).

The corpus models have random weights anyway, so a packed model keeps its graph and every small tensor
exactly and drops the data of its large weights (float tensors of at least ``--min-elements`` elements
that feed a Conv, ConvTranspose, Gemm or MatMul, that an LSTM, GRU or RNN uses as W or R, or that a
Gather reads as its table; initializers or Constant nodes). Each such tensor keeps its name, type and
shape, and the mean and standard deviation of each of its output channels go into the model's metadata
(``WEIGHT_CHANNEL_AXES``: a convolution's filters, a matrix product's columns, a recurrent gate's rows).
``unpack_model`` draws them again, normally distributed with those statistics, from a seed made of the
model's and the tensor's names (the same values on every machine).

Per-channel statistics keep what BatchNorm folding put into the weights (each filter's scale), but not
what it put into the biases: a folded bias cancels the mean of its own filter's output, and the redrawn
filter has another. So the packer also records, for every convolution or fully connected layer whose
weight it drops, each output channel's mean and deviation on one set of feeds (the corpus model's sample;
onnxruntime on the exported model). At load, with the same feeds, onnxruntime evaluates the unpacked
model and each such layer's weight and bias are corrected per channel (``y -> a (y - m) + m_ref``,
``a = s_ref / s``) so that every channel's mean and deviation match the recorded ones; a layer with fewer
than ``MIN_SAMPLES`` values per channel (a squeeze-excite vector, a classifier's logits on one image) is
only shifted (``a = 1``), which on the sample gives its exported outputs. A correction upstream moves the
statistics downstream, so the layers are corrected one depth per onnxruntime pass (one session for all
passes: the corrected tensors are its inputs). The unpacked model then has the exported model's ranges
layer by layer, which fp16 comparisons depend on.

    python benchmarks/corpus_pack.py --cache /work/corpus-cache --out /work/corpus-packed [--only NAME ...]

``benchmarks/corpus.py --cache /work/corpus-packed`` reads the packed files (``load(path, feeds)``
unpacks them in memory); onnxruntime and edgert both run the unpacked model, so the comparison is as valid
as on the exported weights (the errors differ from the exported ones' only by the weights' draw).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import zlib

import numpy as np

METADATA_KEY = "edgert_corpus_packed"   # JSON: {"weights": {...}, "recentre": {...}} (see pack_model)
WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1, 2), "MatMul": (0, 1), "Gather": (0,),
                 "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}
MIN_SAMPLES = 16          # values per channel for a layer's deviation to be matched too (not a 1x1 SE vector)
RECENTRE_TOLERANCE = 1e-3  # per channel: |m - m_ref| and |s - s_ref| over s_ref (or a floor: see recentre_layers)


def _channel_axes(node, index: int, rank: int) -> tuple[int, ...]:
    """The axes of a weight (input ``index`` of ``node``) that index its output channels; () for one set of
    statistics for the whole tensor."""
    op = node.op_type
    if op == "Conv" and index == 1:
        return (0,)
    if op == "ConvTranspose" and index == 1:
        return (1,)
    if op == "Gemm" and index == 1:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return (0,) if trans_b else (1,)
    if op == "MatMul" and index == 1 and rank >= 2:
        return (rank - 1,)
    if op == "Gather" and index == 0 and rank == 2:
        return (1,)
    if op in ("LSTM", "GRU", "RNN"):
        return (0, 1)
    return ()


def weight_uses(model) -> dict[str, list]:
    """Name of each tensor feeding a weight input (``WEIGHT_INPUTS``) -> its uses, (node, input index)."""
    uses: dict[str, list] = {}
    for node in model.graph.node:
        for index in WEIGHT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index]:
                uses.setdefault(node.input[index], []).append((node, index))
    return uses


def weight_names(model) -> set[str]:
    """Names of the tensors that feed a weight input of a Conv, ConvTranspose, Gemm, MatMul, Gather or RNN."""
    return set(weight_uses(model))


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


def _encode(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _decode(entry: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry["data"]), np.float32).reshape(entry["shape"]).astype(np.float64)


def channel_statistics(array: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and deviation over every axis but ``axes``, kept with size 1 (broadcastable against ``array``)."""
    reduce = tuple(i for i in range(array.ndim) if i not in axes)
    wide = array.astype(np.float64)
    return wide.mean(axis=reduce, keepdims=True), wide.std(axis=reduce, keepdims=True)


def feeds_checksum(feeds: dict) -> int:
    """A checksum of the feeds (names, dtypes, shapes and bytes): the packer's and the loader's must agree."""
    crc = 0
    for name in sorted(feeds):
        value = np.ascontiguousarray(feeds[name])
        crc = zlib.crc32(f"{name}:{value.dtype}:{value.shape}".encode(), crc)
        crc = zlib.crc32(value.tobytes(), crc)
    return crc


def _recentred_layers(model, dropped: set[str]) -> list:
    """The Conv and Gemm nodes whose weight is dropped and used by them alone, and whose bias (when present)
    is an initializer, directly or through Identity nodes (one that others read too is copied at load: the
    TorchScript exporter shares equal constants, through Identity nodes)."""
    initializers = {t.name for t in model.graph.initializer}
    sources = _initializer_sources(model)
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    layers = []
    for node in model.graph.node:
        bias = node.input[2] if len(node.input) > 2 else ""
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and node.input[1] in dropped \
                and readers[node.input[1]] == 1 and (node.op_type == "Conv" or node.input[0] not in dropped) \
                and (not bias or sources.get(bias) in initializers):
            layers.append(node)
    return layers


def _initializer_sources(model) -> dict[str, str]:
    """Each value that is an initializer or an Identity chain of one -> that initializer's name."""
    sources = {t.name: t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in sources:
            sources[node.output[0]] = sources[node.input[0]]
    return sources


def layer_output_statistics(model, feeds: dict, outputs: list[str], inputs: dict | None = None) -> dict:
    """onnxruntime's per-channel (axis 1) mean and deviation of the named values, and how many values each
    channel has; ``inputs``: extra graph inputs (tensors made inputs of ``model``)."""
    values = _evaluate(model, feeds, outputs, inputs)
    return {name: (*channel_statistics(v, (1,)), v.size // v.shape[1]) for name, v in values.items()}


def _evaluate(model, feeds: dict, outputs: list[str], inputs: dict | None = None, session=None):
    session = session or _session(model, outputs)
    run_feeds = {i.name: (feeds | (inputs or {}))[i.name] for i in session.get_inputs()}
    return dict(zip(outputs, session.run(outputs, run_feeds)))


def _session(model, outputs: list[str]):
    import onnxruntime
    from onnx import TensorProto, helper
    probe = type(model).FromString(model.SerializeToString())
    existing = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                              for name in outputs if name not in existing)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    # its fusions may drop a fused layer's output even when it is a graph output (timm's FastViT)
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])


def pack_model(model, min_elements: int = 1024, feeds: dict | None = None):
    """``model`` with the data of its large float weights dropped and their per-channel statistics in its
    metadata; with ``feeds``, also the output statistics of the layers the loader re-centres."""
    import onnx
    from onnx import numpy_helper
    uses = weight_uses(model)
    weights, originals = {}, {}
    for name, tensor in _weight_tensors(model, set(uses)):
        if tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"tensor {name!r} has external data; save the model with it inline")
        array = numpy_helper.to_array(tensor)
        if array.size < min_elements:
            continue
        axes = {_channel_axes(node, index, array.ndim) for node, index in uses[name]}
        axes = axes.pop() if len(axes) == 1 else ()    # used as two kinds of weight: one set of statistics
        mean, std = channel_statistics(array, axes)
        weights[name] = {"axes": list(axes), "mean": _encode(mean), "std": _encode(std)}
        originals[name] = array
    recentre = {}
    if feeds is not None:
        layers = _recentred_layers(model, set(weights))
        stats = layer_output_statistics(model, feeds, [node.output[0] for node in layers])
        recentre = {"feeds": feeds_checksum(feeds), "layers": {
            node.output[0]: {"mean": _encode(mean), "std": _encode(std), "shift_only": bool(samples < MIN_SAMPLES)}
            for node in layers for mean, std, samples in [stats[node.output[0]]]}}
    for name, tensor in _weight_tensors(model, set(weights)):
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({"weights": weights, "recentre": recentre})
    return model


def _seed(model_name: str, tensor_name: str) -> int:
    return zlib.crc32(f"{model_name}/{tensor_name}".encode())


def unpack_model(model, model_name: str, feeds: dict | None = None):
    """A packed model with its dropped weights drawn again and its layers re-centred on ``feeds`` (in place);
    other models are returned as they are. A packed model with re-centring data needs the feeds it was packed
    with (a ValueError says so)."""
    from onnx import numpy_helper
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        return model
    packed = json.loads(props[METADATA_KEY])
    recentre = packed["recentre"]
    if recentre.get("layers"):
        if feeds is None:
            raise ValueError(f"packed model {model_name!r} re-centres its layers on the feeds it was packed with: "
                             "pass them (the corpus model's sample)")
        if feeds_checksum(feeds) != recentre["feeds"]:
            raise ValueError(f"packed model {model_name!r}: these feeds are not the ones it was packed with "
                             "(checksums differ): use the corpus model's sample with the seed corpus.py uses")
    for name, tensor in list(_weight_tensors(model, set(packed["weights"]))):
        entry = packed["weights"][name]
        rng = np.random.default_rng(_seed(model_name, name))
        values = rng.standard_normal(tuple(tensor.dims)) * _decode(entry["std"]) + _decode(entry["mean"])
        tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if recentre.get("layers"):
        recentre_layers(model, feeds, {name: (_decode(e["mean"]), _decode(e["std"]), e["shift_only"])
                                       for name, e in recentre["layers"].items()})
    return model


def recentre_layers(model, feeds: dict, reference: dict) -> int:
    """Correct, per output channel, the weight and bias of each Conv/Gemm whose output is in ``reference``
    ({output: (mean, std, shift_only)}) so that its statistics on ``feeds`` match (only the means where
    ``shift_only``); returns the onnxruntime passes it took
    (one per depth of re-centred layers, and a last one that checks)."""
    from onnx import TensorProto, helper, numpy_helper
    nodes = [node for node in model.graph.node if node.op_type in ("Conv", "Gemm") and node.output[0] in reference]
    tensors = {name: tensor for name, tensor in _weight_tensors(model, {n.input[1] for n in nodes})}
    initializers = {t.name: t for t in model.graph.initializer}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    sources = _initializer_sources(model)
    arrays, layers = {}, []
    for node in nodes:
        weight = numpy_helper.to_array(tensors[node.input[1]]).astype(np.float64)
        out_channels = weight.shape[0]
        if node.op_type == "Gemm" and not next((a.i for a in node.attribute if a.name == "transB"), 0):
            out_channels = weight.shape[1]
        bias = node.input[2] if len(node.input) > 2 else ""
        shared = bias and (bias not in initializers or readers[bias] > 1)    # read through Identity, or by others
        if not bias or shared:     # a bias of its own to carry the shift
            bias_name = node.input[1] + "_recentred_bias"
            bias = numpy_helper.to_array(initializers[sources[bias]]) if shared else np.zeros(out_channels)
            model.graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), bias_name))
            initializers[bias_name] = model.graph.initializer[-1]
            if len(node.input) < 3:
                node.input.append(bias_name)
            else:
                node.input[2] = bias_name
        arrays[node.input[1]] = weight
        arrays[node.input[2]] = np.broadcast_to(numpy_helper.to_array(initializers[node.input[2]]),
                                                (out_channels,)).astype(np.float64)
        layers.append(node)
    # the probe: the corrected tensors are graph inputs, so one session serves every pass
    probe = type(model).FromString(model.SerializeToString())
    kept = [t for t in probe.graph.initializer if t.name not in arrays]
    del probe.graph.initializer[:]
    probe.graph.initializer.extend(kept)
    nodes = [n for n in probe.graph.node if not (n.op_type == "Constant" and n.output[0] in arrays)]
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    probe.graph.input.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in arrays)
    outputs = [node.output[0] for node in layers]
    session = _session(probe, outputs)
    depth = _recentre_depths(model, {node.output[0] for node in layers})
    # one depth per pass: a layer is corrected once, after every re-centred layer above it (the correction is
    # exact for the input it sees); all at once would oscillate through squeeze-excite gates
    worst = 0.0
    for level in range(1, max(depth.values(), default=0) + 2):
        values = _evaluate(probe, feeds, outputs, {k: v.astype(np.float32) for k, v in arrays.items()}, session)
        worst = 0.0
        for node in layers:
            mean, std = (s.reshape(-1) for s in channel_statistics(values[node.output[0]], (1,)))
            *ref, shift_only = reference[node.output[0]]
            ref_mean, ref_std = (s.reshape(-1) for s in ref)
            if depth[node.output[0]] == level:
                matched = (std > 0) & (ref_std > 0) & (not shift_only)
                scale = np.where(matched, ref_std / np.where(std > 0, std, 1), 1.0)
                _apply(node, arrays, scale, ref_mean - scale * mean)
            elif depth[node.output[0]] < level:
                # a channel nearly constant (a detection head's prior bias) is judged against its magnitude:
                # float32 rounding of a mean of -11.5 is far beyond 1e-4 of its deviation
                scale_of_layer = np.sqrt(np.mean(ref_mean ** 2 + ref_std ** 2))
                floor = np.full_like(ref_std, max(1e-3 * scale_of_layer, 1e-30))
                spread = np.maximum.reduce([ref_std, 1e-2 * np.abs(ref_mean), floor])
                worst = max(worst, float(np.max(np.abs(mean - ref_mean) / spread)),
                            0.0 if shift_only else float(np.max(np.abs(std - ref_std) / spread)))
    if worst > RECENTRE_TOLERANCE:
        raise ValueError(f"re-centring did not settle: a channel's statistics are {worst:.1e} (relative) from the "
                         f"packed ones (tolerance {RECENTRE_TOLERANCE:.0e})")
    for name, array in arrays.items():
        target = tensors.get(name) or initializers[name]
        target.CopyFrom(numpy_helper.from_array(array.reshape(tuple(target.dims)).astype(np.float32), target.name))
    return level


def _recentre_depths(model, outputs: set[str]) -> dict[str, int]:
    """For each re-centred layer output: 1 + the most re-centred layers on a path above it (the nodes are
    in topological order, as ONNX requires)."""
    above: dict[str, int] = {}
    depths = {}
    for node in model.graph.node:
        level = max((above.get(name, 0) for name in node.input), default=0)
        if node.output and node.output[0] in outputs:
            level += 1
            depths[node.output[0]] = level
        for name in node.output:
            above[name] = level
    return depths


def _apply(node, arrays: dict, scale: np.ndarray, shift: np.ndarray) -> None:
    """y -> scale * y + shift per output channel, through the node's weight and bias."""
    weight, bias = arrays[node.input[1]], arrays[node.input[2]]
    attributes = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        weight *= scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        arrays[node.input[2]] = scale * bias + shift
        return
    beta = attributes["beta"].f if "beta" in attributes else 1.0
    if "transB" in attributes and attributes["transB"].i:
        weight *= scale[:, None]
    else:
        weight *= scale[None, :]
    arrays[node.input[2]] = scale * bias + shift / beta


def load(path: str, feeds: dict | None = None):
    """The ONNX model at ``path``, unpacked (and re-centred on ``feeds``) when it is a packed one."""
    import onnx
    model = onnx.load(path)
    return unpack_model(model, os.path.splitext(os.path.basename(path))[0], feeds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="/work/corpus-cache", help="the exported models (.onnx files)")
    parser.add_argument("--out", required=True, help="folder for the packed models")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these models only")
    parser.add_argument("--min-elements", type=int, default=1024, help="smallest weight dropped (default 1024)")
    args = parser.parse_args(argv)
    import onnx
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from corpus_models import CORPUS
    names = args.only or sorted(f[:-5] for f in os.listdir(args.cache) if f.endswith(".onnx"))
    missing = [n for n in names if not os.path.exists(os.path.join(args.cache, f"{n}.onnx"))]
    unknown = [n for n in names if n not in CORPUS]
    if missing or unknown:
        print(f"corpus_pack: error: {'not in ' + args.cache + ': ' + ', '.join(missing) if missing else ''}"
              f"{'; ' if missing and unknown else ''}{'not corpus models: ' + ', '.join(unknown) if unknown else ''}",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    total, failed = 0, []
    for name in names:
        feeds = CORPUS[name].sample(np.random.default_rng(0))    # corpus.py's feeds
        try:
            model = pack_model(onnx.load(os.path.join(args.cache, f"{name}.onnx")), args.min_elements, feeds)
        except Exception as error:   # keep packing the others; the exit status says some failed
            print(f"{name}: not packed: {type(error).__name__}: {str(error).splitlines()[0]}", file=sys.stderr)
            failed.append(name)
            continue
        path = os.path.join(args.out, f"{name}.onnx")
        onnx.save(model, path)
        total += os.path.getsize(path)
        print(f"{name}: {os.path.getsize(path) / 2**20:.2f} MiB", file=sys.stderr)
    print(f"{len(names) - len(failed)} models, {total / 2**20:.1f} MiB in {args.out}"
          + (f"; not packed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

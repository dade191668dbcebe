"""INT8 calibration: per-tensor activation scales from running the fp32 graph on sample inputs.

Calibrators (``CALIBRATORS``): ``entropy`` (TensorRT's: a 2048-bin histogram of |x|, the clipping
threshold that minimises the KL divergence between the clipped distribution and its 128-level
quantization), ``minmax`` (max |x|) and ``percentile`` (the 99.99th percentile of |x|). The scale of a
tensor is threshold / 127. Activations come from executing the graph on the CPU reference kernels
(``execute``). ``CalibrationTable`` is the versioned JSON cache (``--calib-cache``): rebuilding with it
skips calibration and gives an identical plan.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Mapping

import numpy as np

from edgert.errors import EdgeRTError, InputError
from edgert.ir.graph import Graph
from edgert.progress import track

CACHE_VERSION = 1
NUM_BINS = 2048
NUM_LEVELS = 128
PERCENTILE = 99.99


class CalibrationError(EdgeRTError):
    """Calibration data or a calibration cache cannot be used."""


class CalibrationTable:
    """Per-tensor int8 scales by tensor name, with the calibrator that produced them."""

    def __init__(self, scales: Mapping[str, float], calibrator: str):
        self.scales = {str(k): float(v) for k, v in scales.items()}
        self.calibrator = calibrator

    def to_dict(self) -> dict:
        return {"version": CACHE_VERSION, "calibrator": self.calibrator,
                "scales": dict(sorted(self.scales.items()))}

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path) -> "CalibrationTable":
        try:
            with open(path) as f:
                data = json.load(f)
        except OSError as e:
            raise CalibrationError(f"cannot read calibration cache {str(path)!r}: {e.strerror}") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:   # a binary or non-UTF-8 file is no cache either
            raise CalibrationError(f"calibration cache {str(path)!r} is not a JSON calibration cache ({e}); give "
                                   "another --calib-cache FILE or delete it to recalibrate") from e
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or "scales" not in data:
            raise CalibrationError(f"calibration cache {str(path)!r} has version {data.get('version')!r}, "
                                   f"expected {CACHE_VERSION}; delete it to recalibrate")
        return cls(data["scales"], str(data.get("calibrator", "unknown")))


# -- graph execution ---------------------------------------------------------------------------------------
def execute(graph: Graph, inputs: Mapping[str, np.ndarray], observe: Callable | None = None,
            reference: bool = False) -> dict:
    """Run ``graph`` layer by layer; ``observe(value, array)`` sees every float activation (inputs too).

    ``reference=True`` runs every layer in fp32 on the CPU kernels (calibration); otherwise layers run
    as placed and with their int8 scales (DLA layers on the simulator, int8 layers on the CPU int8 kernels).
    """
    from edgert.kernels.cpu.int8 import kernel_for
    from edgert.kernels.registry import lookup
    from edgert.ir.kinds import LayerKind

    buffers: dict[int, np.ndarray] = {}
    for value in graph.inputs:
        if value.name not in inputs:
            raise InputError(f"missing input {value.name!r} {value.shape}")
        buffers[id(value)] = np.ascontiguousarray(inputs[value.name], dtype=value.dtype.numpy)
        if observe is not None:
            observe(value, buffers[id(value)])

    def read(value):
        return None if value is None else value.const if value.is_const else buffers[id(value)]

    with np.errstate(all="ignore"):
        for node in graph.nodes:
            outs = [np.empty(v.shape, v.dtype.numpy) for v in node.outputs]
            if reference and node.kind == LayerKind.REFORMAT:
                np.copyto(outs[0], read(node.inputs[0]), casting="unsafe")
            else:
                attrs = {k: v for k, v in node.attrs.items() if k != "int8"} if reference else node.attrs
                kernel = lookup(node.kind, "cpu") if reference else kernel_for(node.kind, attrs, node.device)
                kernel(attrs, [read(v) for v in node.inputs], outs)
            for value, array in zip(node.outputs, outs):
                buffers[id(value)] = array
                if observe is not None and array.dtype.kind == "f":
                    observe(value, array)
    return {name: np.array(read(value)) for value, name in zip(graph.outputs, graph.output_names)}


# -- batches -----------------------------------------------------------------------------------------------
def load_batches(directory, graph: Graph) -> list[dict]:
    """Input batches from a directory: each .npz holds arrays named by graph input; a .npy feeds the single
    input. Arrays with a leading batch larger than the input's are split into input-sized batches."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith((".npy", ".npz")))
    except OSError as e:
        raise CalibrationError(f"cannot read calibration directory {str(directory)!r}: {e.strerror}") from e
    if not names:
        raise CalibrationError(f"calibration directory {str(directory)!r} holds no .npy or .npz files")
    batches = []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".npy"):
            if len(graph.inputs) != 1:
                raise CalibrationError(f"{path}: a .npy file feeds a single-input model; this model has "
                                       f"{len(graph.inputs)} inputs (use .npz with arrays named by input)")
            arrays = {graph.inputs[0].name: _load_array_file(path)}
        else:
            arrays = _load_array_file(path)
        batches.extend(split_batches(arrays, graph))
    return batches


def _load_array_file(path: str):
    """An .npy array or the arrays of an .npz (no pickles); CalibrationError for anything else."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return data
        with data:
            return {k: data[k] for k in data.files}
    except Exception as e:   # np.load raises ValueError, OSError, zipfile errors... on a bad file
        kind = "an .npy array" if path.endswith(".npy") else "an .npz of arrays"
        found = "not in NumPy's format" if "pickle" in str(e) else (str(e).splitlines() or [repr(e)])[0][:80]
        raise CalibrationError(f"calibration file {path} is not {kind} ({found}); write batches with np.save / "
                               "np.savez") from None


def split_batches(arrays: Mapping[str, np.ndarray], graph: Graph) -> list[dict]:
    """Cut arrays with a long leading axis into batches of the graph inputs' shapes."""
    counts = set()
    for value in graph.inputs:
        if value.name not in arrays:
            raise CalibrationError(f"calibration data lacks input {value.name!r} (has {', '.join(arrays)})")
        array = arrays[value.name]
        per = value.shape[0] if value.shape else 1
        if tuple(array.shape[1:]) != tuple(value.shape[1:]) or array.shape[0] % per:
            raise CalibrationError(f"calibration array for {value.name!r} has shape {array.shape}; expected "
                                   f"a multiple of {value.shape} along the first axis")
        counts.add(array.shape[0] // per)
    if len(counts) != 1:
        raise CalibrationError("calibration arrays hold different numbers of batches")
    batches = []
    for index in range(counts.pop()):
        batches.append({v.name: arrays[v.name][index * v.shape[0]:(index + 1) * v.shape[0]]
                        .astype(v.dtype.numpy) for v in graph.inputs})
    return batches


# -- calibrators -------------------------------------------------------------------------------------------
def collect_amax(graph: Graph, batches: Iterable[dict]) -> dict[str, float]:
    amax: dict[str, float] = {}

    def observe(value, array):
        amax[value.name] = max(amax.get(value.name, 0.0), float(np.max(np.abs(array), initial=0.0)))
    for batch in track(batches, "calibration: activation ranges"):
        execute(graph, batch, observe, reference=True)
    return amax


def collect_histograms(graph: Graph, batches: Iterable[dict], amax: dict[str, float]) -> dict[str, np.ndarray]:
    hists: dict[str, np.ndarray] = {}

    def observe(value, array):
        top = amax.get(value.name, 0.0)
        if top > 0:
            hist, _ = np.histogram(np.abs(array), bins=NUM_BINS, range=(0.0, top))
            hists[value.name] = hists.get(value.name, 0) + hist.astype(np.float64)
    for batch in track(batches, "calibration: histograms"):
        execute(graph, batch, observe, reference=True)
    return hists


def entropy_threshold(hist: np.ndarray, amax: float) -> float:
    """TensorRT's KL-divergence threshold over a histogram of |x| on [0, amax]."""
    bins = len(hist)
    width = amax / bins
    best_kl, best_i = np.inf, bins
    for i in range(NUM_LEVELS, bins + 1):
        reference = hist[:i]
        p = reference.copy()
        p[-1] += hist[i:].sum()
        level = (np.arange(i) * NUM_LEVELS) // i
        nonzero = reference > 0
        sums = np.bincount(level, weights=reference, minlength=NUM_LEVELS)
        counts = np.bincount(level, weights=nonzero.astype(np.float64), minlength=NUM_LEVELS)
        q = np.where(nonzero, sums[level] / np.maximum(counts[level], 1), 0.0)
        if p.sum() == 0 or q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i * width


def percentile_threshold(hist: np.ndarray, amax: float, percentile: float = PERCENTILE) -> float:
    cumulative = np.cumsum(hist)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return (min(index, len(hist) - 1) + 1) * amax / len(hist)


CALIBRATORS = ("entropy", "minmax", "percentile")


def calibrate(graph: Graph, batches, calibrator: str = "entropy") -> CalibrationTable:
    """Scales (threshold / 127) for every float activation of ``graph`` over ``batches``."""
    if calibrator not in CALIBRATORS:
        raise CalibrationError(f"unknown calibrator {calibrator!r}; expected one of {', '.join(CALIBRATORS)}")
    batches = load_batches(batches, graph) if isinstance(batches, (str, os.PathLike)) else list(batches)
    if not batches:
        raise CalibrationError("calibration needs at least one input batch")
    _check_batch_shapes(graph, batches)
    amax = collect_amax(graph, batches)
    thresholds = dict(amax)
    if calibrator != "minmax":
        hists = collect_histograms(graph, batches, amax)
        pick = entropy_threshold if calibrator == "entropy" else percentile_threshold
        for name, hist in hists.items():
            thresholds[name] = pick(hist, amax[name])
    scales = {name: (t if t > 0 else 1.0) / 127.0 for name, t in thresholds.items()}
    return CalibrationTable(scales, calibrator)


def _check_batch_shapes(graph: Graph, batches: list) -> None:
    for index, batch in enumerate(batches):
        for value in graph.inputs:
            if value.name in batch and tuple(np.shape(batch[value.name])) != tuple(value.shape):
                raise CalibrationError(f"calibration batch {index} gives input {value.name!r} shape "
                                       f"{tuple(np.shape(batch[value.name]))}, but the build's input shape is "
                                       f"{tuple(value.shape)}; give batches of the input's shape")


def calibrate_or_load(graph: Graph, batches, calibrator: str = "entropy", cache=None) -> CalibrationTable:
    """The cache's table when ``cache`` exists; else calibrate (and write the cache when a path is given)."""
    if cache is not None and os.path.exists(cache):
        return CalibrationTable.load(cache)
    if batches is None:
        raise CalibrationError("int8 needs calibration data (--calib DIR) or an existing --calib-cache file")
    table = calibrate(graph, batches, calibrator)
    if cache is not None:
        table.save(cache)
    return table

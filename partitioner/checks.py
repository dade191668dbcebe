"""The named checks that capability tables use: ``check = "attr_range"`` in a rule calls ``attr_range``.

Each check is ``fn(layer, rule, precision) -> str | None``: None when the layer satisfies the rule,
otherwise a short description of what was found ("40x40", "float32 input of rank 2"), which the
engine appends to the rule's reason. Checks read only the layer view (``edgert.targets.layers``).
"""

from __future__ import annotations

import enum
from typing import Callable

import numpy as np

from edgert.targets.layers import LayerInfo, TensorInfo

Check = Callable[[LayerInfo, dict, str], "str | None"]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


def plain(value):
    """A str-enum member as its plain value (plans read attrs back as plain strings)."""
    return value.value if isinstance(value, enum.Enum) else value


def _values(value) -> list:
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else [plain(value)]


def _shown(values) -> str:
    return "x".join(str(v) for v in values) if len(values) > 1 else str(values[0])


def _activations(layer: LayerInfo) -> list[TensorInfo]:
    return [t for t in layer.inputs if t is not None and not t.is_const] + list(layer.outputs)


def _batch(t: TensorInfo) -> int:
    return int(np.prod(t.shape[:max(t.rank - 3, 0)], dtype=np.int64))


def _attr(layer: LayerInfo, rule: dict):
    return plain(layer.attrs.get(rule["attr"], rule.get("default")))


# -- general -------------------------------------------------------------------------------------
@check
def precision(layer, rule, build_precision):
    used = layer.precision or build_precision
    return None if used in rule["allowed"] else used


@check
def float_tensors(layer, rule, build_precision):
    bad = sorted({t.dtype for t in _activations(layer) if not t.is_float})
    return None if not bad else f"{', '.join(bad)} tensors"


@check
def static_shapes(layer, rule, build_precision):
    for t in _activations(layer):
        if any(not isinstance(d, (int, np.integer)) or d < 1 for d in t.shape):
            return f"shape {t.shape}"
    return None


@check
def batch(layer, rule, build_precision):
    worst = max((_batch(t) for t in _activations(layer)), default=1)
    return None if worst <= rule["max"] else f"batch {worst}"


@check
def dims(layer, rule, build_precision):
    worst = max((max(t.shape[-3:], default=1) for t in _activations(layer)), default=1)
    return None if worst <= rule["max"] else f"dimension {worst}"


@check
def precision_in(layer, rule, build_precision):
    used = layer.precision or build_precision
    return None if used in rule["allowed"] else f"{used} precision"


# -- shapes ----------------------------------------------------------------------------------------
@check
def rank(layer, rule, build_precision):
    which = rule.get("which", "input")
    tensors = {"input": [layer.input(0)], "output": list(layer.outputs), "all": _activations(layer)}[which]
    for t in tensors:
        if t is not None and t.rank != rule["equal"]:
            return f"rank {t.rank} tensor {t.shape}"
    return None


@check
def spatial_rank(layer, rule, build_precision):
    count = len(layer.attrs.get("kernel") or ())
    return None if count == rule["equal"] else f"{count}-D"


@check
def channels(layer, rule, build_precision):
    tensor = layer.input(0) if rule["which"] == "input" else layer.output
    count = tensor.shape[1] if tensor.rank >= 2 else 1
    return None if rule["min"] <= count <= rule["max"] else f"{count} {rule['which']} channels"


@check
def broadcast(layer, rule, build_precision):
    """Every operand equals the output's shape, or is (N, C, 1, 1) / (N, 1, 1, 1) against it."""
    out = layer.output.shape
    for t in layer.inputs:
        if t is None:
            continue
        shape = (1,) * (len(out) - t.rank) + tuple(t.shape)
        n = shape[0]
        allowed = (tuple(out), (n, out[1]) + (1,) * (len(out) - 2), (n,) + (1,) * (len(out) - 1))
        if shape not in allowed or n not in (1, out[0]):
            return f"operand {tuple(t.shape)} against output {tuple(out)}"
    return None


# -- attributes ------------------------------------------------------------------------------------
@check
def attr_range(layer, rule, build_precision):
    values = [v for v in _values(_attr(layer, rule)) if v is not None]
    bad = [v for v in values if not rule["min"] <= v <= rule["max"]]
    return None if not bad else f"{rule['attr']} {_shown(values)}"


@check
def attr_in(layer, rule, build_precision):
    value = _attr(layer, rule)
    allowed = {str(v).lower() for v in rule["values"]}
    return None if str(value).lower() in allowed else f"{rule['attr']} {value}"


@check
def attr_equal(layer, rule, build_precision):
    values = _values(_attr(layer, rule))
    bad = [v for v in values if v != rule["value"]]
    return None if not bad else f"{rule['attr']} {_shown(values)}"


@check
def pads_below_kernel(layer, rule, build_precision):
    kernel = list(layer.attrs.get("kernel") or ())
    pads = list(layer.attrs.get("pads") or [0] * 2 * len(kernel))
    for axis, k in enumerate(kernel):
        if pads[axis] >= k or pads[axis + len(kernel)] >= k:
            return f"pads {_shown(pads)} with kernel {_shown(kernel)}"
    return None


@check
def deconv_window(layer, rule, build_precision):
    """Kernel or stride dims in [1, max], or 1xK / Kx1 with K one of the wide sizes."""
    values = [int(v) for v in _values(_attr(layer, rule))]
    if all(1 <= v <= rule["max"] for v in values):
        return None
    if len(values) == 2 and 1 in values and max(values) in rule["wide"]:
        return None
    return f"{rule['attr']} {_shown(values)}"


@check
def not_square_in(layer, rule, build_precision):
    values = [int(v) for v in _values(_attr(layer, rule))]
    square = len(set(values)) == 1 and rule["min"] <= values[0] <= rule["max"]
    return None if not square else f"square {rule['attr']} {_shown(values)}"


@check
def output_count(layer, rule, build_precision):
    return None if len(layer.outputs) == rule["equal"] else f"{len(layer.outputs)} outputs"


@check
def min_inputs(layer, rule, build_precision):
    count = sum(t is not None for t in layer.inputs)
    return None if count >= rule["min"] else f"{count} input{'s' if count != 1 else ''}"


@check
def concat_axis(layer, rule, build_precision):
    axis = int(layer.attrs.get("axis", 1))
    axis = axis + layer.output.rank if axis < 0 else axis
    return None if axis == rule["equal"] else f"axis {axis}"


# -- operands --------------------------------------------------------------------------------------
@check
def const_input(layer, rule, build_precision):
    t = layer.input(rule["index"])
    if t is None:
        return None if rule.get("optional") else "no operand"
    if not t.is_const:
        return "an operand computed at run time"
    if rule.get("uniform") and np.unique(t.const).size > 1:
        return "a constant whose values differ"
    return None


@check
def fully_connected(layer, rule, build_precision):
    a, b = layer.input(0), layer.input(1)
    if b is None or not b.is_const or b.rank != 2:
        return "a weight operand that is not a 2-D constant"
    if layer.attrs.get("trans_a"):
        return "a transposed input"
    if a.rank == 2 or (a.rank == 4 and a.shape[2:] == (1, 1)):
        return None
    return f"input of shape {a.shape}"


# -- layer-specific --------------------------------------------------------------------------------
@check
def resize_scales(layer, rule, build_precision):
    x, out = layer.input(0), layer.output
    factors = [o / i for o, i in zip(out.shape, x.shape)]
    limit = rule["max_by_mode"].get(str(layer.attrs.get("mode", "nearest")).lower())
    if limit is None or factors[:2] != [1.0, 1.0]:
        return f"scales {_shown([round(f, 3) for f in factors])}"
    if any(f != int(f) or not 1 <= f <= limit for f in factors[2:]):
        return f"scales {_shown([round(f, 3) for f in factors])}"
    return None


@check
def slice_keeps_batch(layer, rule, build_precision):
    starts, sizes = layer.attrs.get("starts") or [0], layer.attrs.get("sizes") or [layer.input(0).shape[0]]
    return None if starts[0] == 0 and sizes[0] == layer.input(0).shape[0] else "a slice of the batch dimension"


@check
def shuffle_keeps_batch(layer, rule, build_precision):
    x, out = layer.input(0), layer.output
    for key in ("first_perm", "second_perm"):
        perm = layer.attrs.get(key)
        if perm is not None and list(perm)[0] != 0:
            return f"{key} {_shown(list(perm))} moving the batch dimension"
    if out.rank == 0 or out.shape[0] != x.shape[0]:
        return f"reshape {x.shape} -> {out.shape} changing the batch dimension"
    return None


@check
def softmax_axis(layer, rule, build_precision):
    x = layer.input(0)
    axes = [a + x.rank if a < 0 else a for a in layer.attrs.get("axes") or [1]]
    if len(axes) != 1 or axes[0] == 0 or layer.attrs.get("log"):
        return f"axes {axes}" + (" (log-softmax)" if layer.attrs.get("log") else "")
    others = [d for i, d in enumerate(x.shape[1:], start=1) if i != axes[0]]
    limit = rule["max_alone"] if all(d == 1 for d in others) else rule["max_with_others"]
    return None if x.shape[axes[0]] <= limit else f"axis size {x.shape[axes[0]]} (limit {limit})"


@check
def reduce_axes(layer, rule, build_precision):
    rank_ = layer.input(0).rank
    axes = [a + rank_ if a < 0 else a for a in layer.attrs.get("axes") or range(rank_)]
    return None if 0 not in axes else f"axes {axes} including the batch dimension"

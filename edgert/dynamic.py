"""Building one plan for a range of input shapes (optimization profiles).

Design. The importer and the passes work on static shapes: they fold shape arithmetic (Shape → Gather →
Concat → Reshape chains, Flatten targets, Slice bounds, global pooling windows) into plain integers in the
layers' attributes. A profile build therefore builds the model at several **probe shapes** per profile —
min, opt, max, two "staggered" shapes where the dynamic dims alternate between their min and max (so two
dims never move together), and one seeded random shape in range — and compares the probe plans:

- the graph must come out the same at every probe (same layers, kinds, tensors, constants); where it does
  not (a Squeeze that removes a batch of 1 only at min, shape arithmetic that feeds data, ...), the build
  fails naming the first layer or constant that differs;
- every integer attribute that differs between probes gets a **dim expression** over the layer's own input
  shapes (``edgert.runtime.shapes``: a dim, dim + c, dim * c, dim // c, a product of consecutive dims,
  Reshape's inferred -1), the simplest one that reproduces every probe; an attribute no expression explains
  is a build error. Those expressions are the plan's **shape program**: the runtime evaluates them layer by
  layer and re-runs the shape rules when input shapes change (``specialize``);
- the program is checked before the plan is returned: for every probe, ``specialize`` must give every tensor
  exactly the shape the probe build gave it.

The plan is the build at the largest probe (the largest profile's max shapes): its arena has a slot of each
tensor's max size, and a smaller tensor of the same schedule fits its slot, so one arena per context serves
every shape in every profile. Layouts whose offsets depend on shapes (a concat written in place by its
producers, a slice viewed at an offset) are not used in profile builds. ``profiles`` in the plan records each
profile's ranges and the arena the probe builds at its min/opt/max would need.

DLA: the DLA needs static shapes (as in TensorRT). With ``dla_core`` the probes are first built for the CPU to
find the layers whose shapes vary; those fail the DLA's capability check with that reason (``--gpu-fallback``
moves them to the GPU, else the build fails naming the layer), and the static layers stay on the DLA.

CUDA kernels (``gpu_kernels``, ``timing_cache``, ``autotune``): the probes are built without kernels but with
their memory planned for them; the kernels are compiled once, for the final plan, shape-generic
(``edgert.kernels.cuda.generic``): tactics chosen at each profile's opt shape, the runtime lowering the plan at
the shapes it runs and passing the dims that vary to the kernels as arguments.
"""

from __future__ import annotations

import itertools

import numpy as np

from edgert.errors import EdgeRTError, ShapeError, UnsupportedError
from edgert.ir.kinds import LayerKind
from edgert.plan import Plan
from edgert.profiles import is_static, normalize_profiles


def build_with_profiles(model, profiles, shapes=None, config=None):
    """A Plan for every shape in ``profiles`` ([{input: (min, opt, max)}]); ``shapes`` pins inputs in all;
    ``config``: the build's ``BuildConfig``."""
    from edgert.builder import build
    from edgert.onnx.importer import load_model, model_input_dims

    proto = load_model(model)
    return build_profiles(lambda shapes, config: build(proto, shapes=shapes, config=config),
                          model_input_dims(proto), profiles, shapes, config)


def build_profiles(build_at, input_dims, profiles, shapes=None, config=None):
    """``build_with_profiles`` for any model source: ``build_at(shapes, config) -> Plan`` builds it at static
    shapes (an ONNX model, or a TensorRT-style network's graph, ``edgert.api``); ``input_dims``: {input name:
    dims, None where dynamic}."""
    from edgert.build_options import BuildConfig

    config = config if config is not None else BuildConfig()
    profiles = normalize_profiles(profiles, input_dims, shapes)
    if is_static(profiles):
        return build_at({name: opt for name, (_, opt, _) in profiles[0].items()}, config)
    config = _calibrate_once(build_at, profiles, config)
    full_config = config
    compile_cuda = bool(config.gpu_kernels or config.timing_cache is not None or config.autotune)
    # the probes are built without CUDA kernels, their memory planned for parallel CUDA kernels when there will be
    config = config.replace(gpu_kernels=None, timing_cache=None, autotune=None,
                            cpu_only_aliases=False if compile_cuda else config.cpu_only_aliases)
    probes = probe_shapes(profiles)
    main_index = max((i for i, (_, label, _) in enumerate(probes) if label == "max"),
                     key=lambda i: sum(int(np.prod(s)) for s in probes[i][2].values()))
    if config.dla_core is not None:
        # The DLA needs static shapes: find the layers whose shapes vary (CPU probe builds), then build again
        # with those layers failing the DLA's capability check (GPU fallback with that reason, or an error).
        host = _probe_documents(build_at, probes, main_index, config.replace(
            target="host", dla_core=None, gpu_fallback=None, placement=None, reorder=False))
        config = config.replace(dynamic_layers=_dynamic_layers(host))
    documents = _probe_documents(build_at, probes, main_index, config)
    main = documents[main_index]
    _check_same_graph(main, documents, probes)
    for layer in main["layers"]:
        dynamic = _fit_layer(layer, main, documents, probes)
        if dynamic:
            layer["dynamic"] = dynamic
    main["profiles"] = _profiles_section(profiles, probes, documents)
    _annotate_ranges(main, documents)
    _verify(main, documents, probes)
    if compile_cuda:
        _compile_cuda(main, full_config)
    return Plan(main)


def _calibrate_once(build_at, profiles: list[dict], config):
    """int8 calibration for a profile build: run once, at the calibration batches' own shapes (a directory of
    batches: profile 0's opt shapes), and give every probe the table. Each probe calibrating its own graph
    would run batches of one shape through a graph of another (and split a directory by each probe's batch)."""
    import os
    import tempfile

    from edgert.calibration import CalibrationTable

    int8 = config.precision == "int8" or _int8_rules(config)
    if not int8 or config.calibration is not None or (config.calib is None and not config.calib_cache):
        return config
    if config.calib_cache and os.path.exists(config.calib_cache):
        return config.replace(calibration=CalibrationTable.load(config.calib_cache))
    if isinstance(config.calib, (str, os.PathLike)):
        shapes = {name: opt for name, (_, opt, _) in profiles[0].items()}
    else:
        batches = list(config.calib)
        if not batches:
            return config.replace(calib=batches)   # the build's own error: no batches
        shapes = {name: tuple(np.shape(array)) for name, array in batches[0].items()}
        config = config.replace(calib=batches)
    with tempfile.TemporaryDirectory(prefix="edgert-calib-") as folder:
        cache = config.calib_cache or os.path.join(folder, "calibration.json")
        try:
            build_at(shapes, config.replace(calib_cache=cache, gpu_kernels=None, timing_cache=None, autotune=None))
        except EdgeRTError as e:
            raise type(e)(f"calibrating at shapes {_shown(shapes)}: {e}") from e
        return config.replace(calibration=CalibrationTable.load(cache))


def _int8_rules(config) -> bool:
    from edgert.precision import load_rules

    rules = load_rules(config.placement, "placement file") + load_rules(config.precision_rules)
    return any(rule.precision == "int8" for rule in rules)


def _compile_cuda(main: dict, config) -> None:
    """Shape-generic CUDA kernels for the final plan; its header records the build's settings, CUDA ones too."""
    from edgert.builder import _compile_gpu_kernels
    from edgert.plan import to_plain

    main["header"]["options"] = to_plain(config.header_options())
    _compile_gpu_kernels(main, config.target, config, config.timing_cache)


def _probe_documents(build_at, probes: list, main_index: int, config) -> list[dict]:
    documents, cache = [], {}
    for index, (_, label, probe) in enumerate(probes):
        try:
            plan = build_at(probe, config.replace(dynamic_shapes=True, reorder=config.reorder and index == main_index,
                                                  initializer_cache=cache))
        except EdgeRTError as e:
            raise type(e)(f"at probe shapes {_shown(probe)} ({label} of a profile): {e}") from e
        documents.append(plan.document)
    return documents


def _dynamic_layers(documents: list[dict]) -> dict[str, str]:
    """{layer name: its output shape range} of the layers whose input or output shapes differ between probes."""
    from edgert.runtime.shapes import format_range

    seen: dict[str, list] = {}
    for document in documents:
        tensors = document["tensors"]
        for layer in document["layers"]:
            shapes = [tuple(tensors[i]["shape"]) for i in layer["inputs"] + layer["outputs"] if i >= 0]
            seen.setdefault(layer["name"], []).append(shapes)
    dynamic = {}
    for name, per_probe in seen.items():
        if any(shapes != per_probe[0] for shapes in per_probe):
            outputs = [shapes[-1] for shapes in per_probe]
            dynamic[name] = format_range([min(d) for d in zip(*outputs)], [max(d) for d in zip(*outputs)])
    return dynamic


def _shown(probe: dict) -> str:
    return ", ".join(f"{name}={'x'.join(map(str, shape))}" for name, shape in probe.items())


def probe_shapes(profiles: list[dict]) -> list[tuple[int, str, dict]]:
    """(profile index, label, {input: shape}) for the shapes each profile is built at, duplicates removed.

    The staggered and random probes move each dynamic dim on its own, except that the same axis of different
    inputs with the same (min, opt, max) moves together (a batch shared by several inputs).
    """
    probes, seen = [], set()
    rng = np.random.default_rng(0)
    for index, profile in enumerate(profiles):
        names = list(profile)
        groups: dict[tuple, list] = {}
        for n in names:
            for a, triple in enumerate(zip(*profile[n])):
                if triple[0] != triple[2]:
                    groups.setdefault((a, triple), []).append((n, a))
        candidates = [("min", {n: profile[n][0] for n in names}), ("opt", {n: profile[n][1] for n in names}),
                      ("max", {n: profile[n][2] for n in names})]
        for label, parity in (("stagger-a", 0), ("stagger-b", 1), ("random", None)):
            shapes = {n: list(profile[n][0]) for n in names}
            for j, ((_, (lo, _, hi)), members) in enumerate(groups.items()):
                pick = int(rng.integers(lo, hi + 1)) if parity is None else (lo if (j + parity) % 2 else hi)
                for n, a in members:
                    shapes[n][a] = pick
            candidates.append((label, {n: tuple(s) for n, s in shapes.items()}))
        for label, shapes in candidates:
            key = tuple(sorted(shapes.items()))
            if key not in seen:
                seen.add(key)
                probes.append((index, label, shapes))
    return probes


def _tensor_names(document: dict, ids) -> list:
    return [document["tensors"][i]["name"] if i >= 0 else None for i in ids]


def _check_same_graph(main: dict, documents: list[dict], probes: list) -> None:
    """Same layers (by name: kind, input and output tensors) and same constants at every probe."""
    main_layers = {layer["name"]: layer for layer in main["layers"]}
    main_constants = _constants(main)
    for document, (_, label, probe) in zip(documents, probes):
        where = f"at probe shapes {_shown(probe)} ({label})"
        layers = {layer["name"]: layer for layer in document["layers"]}
        if set(layers) != set(main_layers):
            extra = sorted(set(layers) ^ set(main_layers))
            raise UnsupportedError(f"the graph changes with the input shapes: layer {extra[0]!r} exists only at "
                                   f"some shapes ({where}); narrow the profile or pin that dim")
        for name, layer in main_layers.items():
            other = layers[name]
            if other["kind"] != layer["kind"] or _tensor_names(document, other["inputs"]) != \
                    _tensor_names(main, layer["inputs"]) or len(other["outputs"]) != len(layer["outputs"]):
                raise UnsupportedError(f"the graph changes with the input shapes: layer {name!r} differs {where}; "
                                       "narrow the profile or pin that dim")
        constants = _constants(document)
        for name, data in main_constants.items():
            if name not in constants or constants[name] != data:
                raise UnsupportedError(f"constant {name!r} is computed from input shapes and used as data (it "
                                       f"differs {where}); edgert folds shape arithmetic into layer parameters "
                                       "only: pin that dim with --shape")


def _constants(document: dict) -> dict:
    blob, tensors = document["blob"], document["tensors"]
    return {tensors[c["tensor"]]["name"]: (tuple(tensors[c["tensor"]]["shape"]),
                                           bytes(blob[c["offset"]:c["offset"] + c["nbytes"]]))
            for c in document["constants"]}


def _leaves(value, path=()):
    """(path, leaf) of every scalar in nested dicts/lists."""
    if isinstance(value, dict):
        for key in value:
            yield from _leaves(value[key], path + (key,))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path, value


def _fit_layer(layer: dict, main: dict, documents: list[dict], probes: list) -> list:
    """[path, expression] for each attribute leaf of ``layer`` that differs between probes."""
    name = layer["name"]
    per_probe = []
    for document in documents:
        other = next(l for l in document["layers"] if l["name"] == name)
        shapes = {t["name"]: tuple(t["shape"]) for t in document["tensors"]}
        per_probe.append((dict(_leaves(other["attrs"])), [shapes.get(n) for n in _tensor_names(main, layer["inputs"])]))
    main_leaves = dict(_leaves(layer["attrs"]))
    dynamic = []
    for path, value in main_leaves.items():
        values = [leaves.get(path, _MISSING) for leaves, _ in per_probe]
        if all(v == value for v in values) or path == ("cost_ms",):   # a Reformat's estimate: the max shapes'
            continue
        if any(set(leaves) != set(main_leaves) for leaves, _ in per_probe):
            raise UnsupportedError(f"layer {name!r} ({layer['kind']}): its parameters change form with the input "
                                   "shapes; pin the dynamic dims with --shape")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise UnsupportedError(f"layer {name!r} ({layer['kind']}): parameter {_path(path)} changes with the "
                                   f"input shapes ({sorted(set(map(str, values)))}) and is not an integer dim; "
                                   "pin the dynamic dims with --shape")
        expr = _fit(LayerKind(layer["kind"]), layer["attrs"], path, values, [s for _, s in per_probe])
        if expr is None:
            raise UnsupportedError(f"layer {name!r} ({layer['kind']}): parameter {_path(path)} takes values "
                                   f"{values} at the probe shapes, which no dim expression of its input shapes "
                                   "explains (not yet supported); pin the dynamic dims with --shape")
        dynamic.append([list(path), expr])
    return dynamic


_MISSING = object()


def _path(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


def _candidates(kind: LayerKind, attrs: dict, path, value: int, shapes: list):
    """Dim expressions in order of simplicity, the constants taken from the first probe."""
    from edgert.runtime.shapes import source_shape

    sources = ([-1] if kind == LayerKind.SHUFFLE and attrs.get("first_perm") is not None else []) + \
        [k for k, s in enumerate(shapes) if s is not None]
    for k in sources:
        shape = source_shape(kind, attrs, shapes, k)
        for a, dim in enumerate(shape):
            yield ["dim", k, a]
        for a, b in itertools.combinations(range(len(shape) + 1), 2):
            if b - a >= 2:
                yield ["prod", k, a, b]
    if kind == LayerKind.SHUFFLE and path[0] == "reshape":
        yield ["infer"]
    for k in sources:
        for a, dim in enumerate(source_shape(kind, attrs, shapes, k)):
            if dim and value % dim == 0 and value // dim > 1:
                yield ["dim_mul", k, a, value // dim]
            if value and dim % value == 0 and dim // value > 1:
                yield ["dim_div", k, a, dim // value]
            yield ["dim_add", k, a, value - dim]


def _fit(kind: LayerKind, attrs: dict, path, values: list, shapes_per_probe: list):
    from edgert.runtime.shapes import evaluate

    def matches(expr) -> bool:
        if expr[0] == "infer":
            return _infer_matches(kind, attrs, path, values, shapes_per_probe)
        for value, shapes in zip(values, shapes_per_probe):
            try:
                if evaluate(expr, kind, attrs, shapes) != value:
                    return False
            except (IndexError, ShapeError, TypeError):
                return False
        return True

    for expr in _candidates(kind, attrs, path, values[0], shapes_per_probe[0]):
        if matches(expr):
            return expr
    return None


def _infer_matches(kind, attrs, path, values, shapes_per_probe) -> bool:
    """-1 of a Reshape: only when input 0's elements over the value are the same at every probe."""
    from edgert.runtime.shapes import source_shape

    rests = set()
    for value, shapes in zip(values, shapes_per_probe):
        total = int(np.prod(source_shape(kind, attrs, shapes, -1), dtype=np.int64))
        if value == 0 or total % value:
            return False
        rests.add(total // value)
    return len(rests) == 1 and len(path) == 2


def _profiles_section(profiles: list[dict], probes: list, documents: list[dict]) -> list[dict]:
    section = []
    for index, profile in enumerate(profiles):
        arena = {label: document["memory"]["arena_bytes"] for document, (p, label, _) in zip(documents, probes)
                 if p == index and label in ("min", "opt", "max")}
        section.append({"inputs": {name: {"min": list(lo), "opt": list(opt), "max": list(hi)}
                                   for name, (lo, opt, hi) in profile.items()},
                        "arena_bytes": arena})
    return section


def _annotate_ranges(main: dict, documents: list[dict]) -> None:
    """Each tensor's smallest and largest dims over the probes (``inspect`` shows ``1-8x3x48x64-960``)."""
    by_name = [{t["name"]: t["shape"] for t in document["tensors"]} for document in documents]
    for tensor in main["tensors"]:
        shapes = [shapes[tensor["name"]] for shapes in by_name if tensor["name"] in shapes]
        low = [min(dims) for dims in zip(*shapes)]
        high = [max(dims) for dims in zip(*shapes)]
        if low != high:
            tensor["range"] = [low, high]


def _verify(main: dict, documents: list[dict], probes: list) -> None:
    """The shape program gives every tensor the shape the probe build gave it, at every probe."""
    from edgert.runtime.engine import Engine
    from edgert.runtime.shapes import np_shape_bytes, specialize

    engine = Engine(main)
    ids = {t["name"]: i for i, t in enumerate(main["tensors"])}
    for document, (_, label, probe) in zip(documents, probes):
        inputs = {b["tensor"]: tuple(probe[b["name"]]) for b in main["bindings"]["inputs"]}
        try:
            shapes, _ = specialize(engine, inputs)
        except EdgeRTError as e:
            raise ShapeError(f"internal: the shape program fails at probe {_shown(probe)} ({label}): {e}") from e
        for tensor in document["tensors"]:
            tid = ids.get(tensor["name"])
            if tid is None or tuple(shapes[tid]) != tuple(tensor["shape"]):
                raise UnsupportedError(f"tensor {tensor['name']!r} has shape {tuple(tensor['shape'])} at probe "
                                       f"{_shown(probe)} ({label}), the shape program gives "
                                       f"{None if tid is None else shapes[tid]} (not yet supported); pin the "
                                       "dynamic dims with --shape")
            if np_shape_bytes(tensor["shape"], tensor["dtype"]) > np_shape_bytes(main["tensors"][tid]["shape"],
                                                                                 tensor["dtype"]):
                raise UnsupportedError(f"tensor {tensor['name']!r} is larger at probe {_shown(probe)} than at the "
                                       "profile's max shapes, so no arena slot fits every shape (not yet supported)")

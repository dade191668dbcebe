"""The build phase: ONNX (or an IR graph) → optimized, scheduled, memory-planned graph → Plan."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edgert import __version__
from edgert.build_options import BuildConfig, check_arena
from edgert.errors import EdgeRTError
from edgert.ir.graph import Graph, Node
from edgert.ir.valid_rows import graph_output_rows
from edgert.memory import ALIGNMENT, MemoryPlan
from edgert.plan import Plan, to_plain
from edgert.schedule import ScheduleSpecs, choose_schedule, plan_graph_memory
from edgert.streams import assign_streams

CONST_ALIGNMENT = 64
_PRECISION_NAMES = {"float32": "fp32", "float16": "fp16", "int8": "int8", "float64": "fp64"}


def build(model, *, shapes: Mapping[str, Sequence[int]] | None = None, profiles=None,
          config: BuildConfig | None = None, **options) -> Plan:
    """Import ``model`` (path, bytes or onnx.ModelProto), optimize it and return a Plan.

    The settings come as one typed ``config`` (``edgert.build_options.BuildConfig``) or as its fields by keyword
    (``target``, ``precision``, ``optimize``, ``disabled_passes``, ...; an unknown one is an error naming the valid
    ones). ``optimize=False`` skips every graph pass, ``disabled_passes`` skips the named ones; the plan's header
    records how many rewrites each pass made (``plan.header["passes"]``). A plan without CUDA kernels lets
    pooling, depthwise convolution and LRN write over their input (the CPU runtime's kernels allow it);
    ``cpu_only_aliases=False`` plans its memory for CUDA kernels compiled into it later.

    ``profiles``: optimization profiles, ``[{input: (min, opt, max)}, ...]``: the plan then runs every shape in
    range (``edgert.dynamic``); ``shapes`` pins inputs in every profile.
    """
    from edgert.onnx.importer import import_model

    if config is None:
        config = BuildConfig.from_options(**options)
    elif options:
        raise EdgeRTError(f"give build settings either as config= or as keywords, not both (found config and "
                          f"{', '.join(sorted(options))})")
    if profiles is not None:
        if config.max_aux_streams:
            raise EdgeRTError("max_aux_streams is not supported with optimization profiles yet; build with "
                              "static shapes (--shape) or without auxiliary streams")
        from edgert.dynamic import build_with_profiles
        return build_with_profiles(model, profiles, shapes, config)

    graph = import_model(model, shapes, config.initializer_cache)
    graph.verify()
    return build_graph(graph, config)


def build_graph(graph: Graph, config: BuildConfig | None = None, **options) -> Plan:
    """Optimize, partition, choose precisions, schedule and plan the memory of an IR graph (``config`` or its
    fields by keyword, as ``build``)."""
    from edgert.passes import PIPELINE, optimize as run_passes
    from edgert.precision import load_rules

    config = config if config is not None else BuildConfig.from_options(**options)
    formats = _io_formats(graph, config)
    rules = load_rules(config.placement, "placement file") + load_rules(config.precision_rules)
    qdq_folded = _fold_qdq(graph, config, rules)
    pass_counts = run_passes(graph, disabled=config.disabled_passes if config.optimize else PIPELINE)
    if qdq_folded:
        pass_counts["qdq_folding"] = qdq_folded
    partition_report = _partition(graph, config)
    precision_report = _precision(graph, config, rules, formats)
    # CUDA kernels are compiled over this memory plan: layers may then only write over their input element for
    # element (see edgert.schedule.step_alias); cpu_only_aliases=False plans so without compiling them
    compile_cuda = bool(config.gpu_kernels or config.timing_cache is not None or config.autotune)
    cpu_kernels = bool(config.cpu_only_aliases) and not compile_cuda
    codes = _int8_codes(graph, config, precision_report, cpu_kernels, formats)
    io_report = _apply_io_formats(graph, formats, precision_report, codes)
    output_rows = graph_output_rows(graph)   # data-dependent sizes (NMS, NonZero): counts kept to the end
    counts = [rows[0] for rows in output_rows if rows is not None]
    schedule_report = choose_schedule(graph, cpu_kernels, counts) if config.reorder else {"order": "model",
                                                                                          "lower_bound_bytes": {}}
    graph.verify()
    specs = ScheduleSpecs(graph, graph.nodes, cpu_kernels=cpu_kernels, keep=counts, dynamic=config.dynamic_shapes)
    streams = assign_streams(specs.steps, config.max_aux_streams or 0)
    if streams.count > 1 and cpu_kernels:
        from edgert import log
        log.warning(f"max_aux_streams {config.max_aux_streams}: the plan has no CUDA kernels, and the CPU runtime runs "
                    "its layers one at a time; the streams take effect with CUDA kernels (--gpu-kernels)")
    memory = plan_graph_memory(specs, reuse=config.memory_reuse, streams=streams)
    check_arena(memory.arena_bytes, config.max_arena, config.target)
    document = _document(graph, specs, memory, schedule_report, config, output_rows,
                         {**(codes.scales if codes is not None else {}), **io_report.scales})
    streams.to_layers(document["layers"])
    if compile_cuda:
        _compile_gpu_kernels(document, config.target, config, config.timing_cache)
    document["header"]["passes"] = pass_counts
    if partition_report is not None:
        document["header"]["partition"] = to_plain(partition_report.to_dict())
    document["header"]["precision"] = to_plain(precision_report.to_dict())
    if codes is not None:
        document["header"]["int8_codes"] = codes.to_dict()
    if formats[0] or formats[1]:
        document["header"]["io_formats"] = io_report.to_dict()
    return Plan(document)


def _io_formats(graph: Graph, config: BuildConfig) -> tuple[dict, dict]:
    """(input formats, output formats) of ``config`` (``edgert.io_formats``), checked against the graph."""
    from edgert.io_formats import check_names, parse_formats

    inputs = parse_formats(config.input_formats, "input format")
    outputs = parse_formats(config.output_formats, "output format")
    check_names(graph, inputs, outputs)
    vectorized = [name for name, fmt in {**inputs, **outputs}.items() if fmt.layout != "linear"]
    if vectorized and config.dynamic_shapes:
        from edgert.io_formats import IOFormatError
        raise IOFormatError(f"binding {vectorized[0]!r}: channel-vectorized layouts need static shapes (build "
                            "without optimization profiles, or bind it linear)")
    return inputs, outputs


def _apply_io_formats(graph: Graph, formats: tuple[dict, dict], precision_report, codes):
    from edgert.io_formats import apply_io_formats

    return apply_io_formats(graph, *formats, precision_report.scales, codes.scales if codes is not None else {})


def _int8_codes(graph: Graph, config: BuildConfig, precision_report, cpu_kernels: bool, formats=({}, {})):
    """int8 codes between int8 layers (``edgert.int8_codes``) when ``config.int8_codes`` asks or defaults so."""
    from edgert import int8_codes
    from edgert.io_formats import int8_outputs

    if not int8_codes.wanted(config.int8_codes, precision_report, cpu_kernels):
        return None
    return int8_codes.apply_int8_codes(graph, config.target, code_outputs=int8_outputs(graph, formats[1]))


def _partition(graph: Graph, config: BuildConfig):
    """Assign layers to the target's GPU / DLA cores (host builds without a DLA request stay on the CPU);
    ``config.dynamic_layers`` (profile builds: {layer: shape range}) cannot go to a DLA."""
    if config.target == "host" and config.dla_core is None:
        return None
    from edgert.partitioner.assign import partition
    from edgert.targets import load_profile

    precision = config.precision
    report = partition(graph, load_profile(config.target), dla_core=config.dla_core,
                       gpu_fallback=bool(config.gpu_fallback), placement=config.placement, precision=precision,
                       dynamic_layers=config.dynamic_layers)
    for node in graph.nodes:
        if node.device.startswith("dla"):
            node.precision = precision  # the DLA computes in the build precision (fp16 / int8), never fp32
    warn_unused_dla(report, config.dla_core, precision)
    return report


def _compile_gpu_kernels(document: dict, target: str, options: BuildConfig, timing_cache=None) -> None:
    """Cross-compile CUDA kernels for the target's GPU arch into the plan (NVRTC or nvcc, no GPU needed).

    Each convolution and matrix product gets the tactic of ``timing_cache`` (a path or a TimingCache),
    else of autotuning when this machine has a GPU of the arch (option ``autotune``: None = when
    present, False = never, True = required), else of the cost model; every layer's ``tactic`` says
    what runs it and, for chosen tactics, where the choice came from.
    """
    from edgert.errors import EdgeRTError
    from edgert.kernels.cuda.autotune import build_policies
    from edgert.kernels.cuda.plan_kernels import compile_kernels, tactic_sources
    from edgert.targets import load_profile

    profile = load_profile(target)
    archs = options.gpu_archs or ([profile.gpu.arch] if profile.gpu is not None else [])
    if not archs:
        raise EdgeRTError(f"target {target!r} has no CUDA GPU to compile kernels for; pick a --target with one "
                          "(see `edgert targets`)")
    if document.get("profiles"):   # optimization profiles: tactics at the opt shape, shape-generic kernels
        from edgert.kernels.cuda.profile_kernels import compile_kernels, opt_document
        policies = build_policies(opt_document(document), archs, profile=profile, timing_cache=timing_cache,
                                  autotune=options.autotune)
    else:
        policies = build_policies(document, archs, profile=profile, timing_cache=timing_cache,
                                  autotune=options.autotune)
    kernels = document["kernels"] = compile_kernels(document, archs, ptx=bool(options.ptx),
                                                    policies=policies)
    for layer, tactic in zip(document["layers"], next(iter(kernels.values()))["tactics"]):
        layer["tactic"] = tactic
    document["header"]["tactics"] = {arch: tactic_sources(section) for arch, section in kernels.items()}


def _fold_qdq(graph: Graph, config: BuildConfig, rules: list) -> int:
    """In int8 builds, Quantize/Dequantize pairs become scales on the tensors they quantize."""
    if config.precision != "int8" and not any(r.precision == "int8" for r in rules):
        return 0
    from edgert.passes import qdq_folding
    return qdq_folding.run(graph)


def _precision(graph: Graph, config: BuildConfig, rules: list, formats=({}, {})):
    """Per-layer precision: the build default, per-layer rules, int8 scales from calibration or its cache.

    Settings read: ``precision``, ``precision_rules`` (a TOML file or rule dicts; the placement file's rules
    with a ``precision`` key count too), ``calibration`` (a CalibrationTable or {tensor name: scale}), ``calib``
    (a directory of .npy/.npz batches, or an iterable of input dicts), ``calibrator`` (entropy | minmax |
    percentile) and ``calib_cache`` (a cache file: read if present, else written).
    """
    from edgert.io_formats import narrow_outputs
    from edgert.precision import apply_precision

    precision = config.precision
    calibration = config.calibration
    if calibration is None and (precision == "int8" or any(r.precision == "int8" for r in rules)) and \
            (config.calib is not None or config.calib_cache):
        from edgert.calibration import calibrate_or_load
        calibration = calibrate_or_load(graph, config.calib, config.calibrator or "entropy", config.calib_cache)
    report = apply_precision(graph, precision, rules=rules, calibration=calibration,
                             narrow_outputs=narrow_outputs(graph, formats[1]))
    if report.unscaled:
        _warn_unscaled(report.unscaled, calibration is not None)
    return report


def _warn_unscaled(layers: list[str], calibrated: bool) -> None:
    """int8 asked for, but layers that could run it had no activation scales: they run fp16 (say so)."""
    from edgert import log

    shown = ", ".join(layers[:6]) + (f" and {len(layers) - 6} more" if len(layers) > 6 else "")
    why = ("the calibration has no scales for their tensors" if calibrated else
           "there is no calibration data and the model has no Q/DQ scales for them")
    log.warning(f"int8 requested, but {why}: {len(layers)} layer{'s' if len(layers) > 1 else ''} fell back to "
                f"fp16 ({shown}); give --calib DIR of input batches (or --calib-cache FILE), or a model with "
                "QuantizeLinear/DequantizeLinear pairs")


def warn_unused_dla(report, dla_core, precision: str) -> None:
    """A DLA core asked for but no layer placed on it: say why (fp32 cannot run there) rather than nothing."""
    from edgert import log

    if dla_core is None or report is None or any(p.device.startswith("dla") for p in report.layers):
        return
    if precision == "fp32":
        log.warning(f"--dla-core {dla_core} with precision fp32 puts no layer on the DLA, which runs only fp16 and "
                    "int8; build with --precision fp16 (or int8 with calibration)")
    else:
        log.warning(f"--dla-core {dla_core}: no layer runs on the DLA; `edgert partition` gives each layer's reason")


def _document(graph: Graph, specs: ScheduleSpecs, memory: MemoryPlan, schedule_report: dict, config: BuildConfig,
              output_rows=None, code_scales=None) -> dict:
    constants, blob = _pack_constants(specs)
    tensors = [{"name": v.name, "dtype": v.dtype.value, "shape": list(v.shape)} for v in specs.values]
    for tensor in tensors:   # int8 codes: the scale of their values (edgert.int8_codes)
        if code_scales and tensor["name"] in code_scales and tensor["dtype"] == "int8":
            tensor["scale"] = float(code_scales[tensor["name"]])

    def binding(value, name, rows=None):
        entry = {"name": name, "dtype": value.dtype.value, "shape": list(value.shape), "tensor": specs.ids[id(value)]}
        if rows is not None:   # shape is the bound; the runtime trims axis rows[1] to the count in tensor rows[0]
            entry["rows"] = {"tensor": specs.ids[id(rows[0])], "axis": int(rows[1])}
        return entry

    layers = [{
        "name": node.name, "kind": node.kind.value, "attrs": to_plain(node.attrs),
        "inputs": list(step.inputs), "outputs": list(step.outputs), "device": node.device,
        "precision": node.precision or _precision_of(node), "tactic": node.tactic, "origin": list(node.origin),
    } for node, step in zip(graph.nodes, specs.steps)]
    return {
        "header": {"edgert_version": __version__, "target": config.target,
                   "options": to_plain(config.header_options())},
        "bindings": {"inputs": [binding(v, v.name) for v in graph.inputs],
                     "outputs": [binding(v, name, rows) for v, name, rows in
                                 zip(graph.outputs, graph.output_names, output_rows or [None] * len(graph.outputs))]},
        "tensors": tensors, "constants": constants, "kernels": {}, "layers": layers,
        "memory": _memory_section(specs, memory, schedule_report, sum(c["nbytes"] for c in constants)),
        "blob": blob,
    }


def _pack_constants(specs: ScheduleSpecs) -> tuple[list[dict], bytes]:
    constants, blob = [], bytearray()
    for index, value in enumerate(specs.values):
        if value.is_const:
            data = np.ascontiguousarray(value.const)
            blob.extend(b"\0" * (-len(blob) % CONST_ALIGNMENT))
            constants.append({"tensor": index, "offset": len(blob), "nbytes": data.nbytes})
            blob.extend(data.tobytes())
    return constants, bytes(blob)


def _memory_section(specs: ScheduleSpecs, memory: MemoryPlan, schedule_report: dict, weights_bytes: int) -> dict:
    io_bytes = sum(t.nbytes for t, v in zip(specs.tensors, specs.values) if t.external and not v.is_const) + \
        sum(t.nbytes for t in specs.tensors if t.graph_output)
    return {
        "alignment": ALIGNMENT,
        "pools": {name: {"arena_bytes": pool["arena_bytes"], "strategy": pool["strategy"],
                         "offsets": sorted([tid, offset] for tid, offset in pool["offsets"].items())}
                  for name, pool in memory.pools.items()},
        "elided": list(memory.elided_steps),
        "overwrite": list(memory.overwrite_steps),
        "cpu_only": list(specs.cpu_only_steps),
        "lifetimes": sorted([tid, first, last] for tid, (first, last) in memory.lifetimes.items()),
        "arena_bytes": memory.arena_bytes, "lower_bound_bytes": memory.lower_bound_bytes,
        "no_reuse_bytes": memory.no_reuse_bytes, "weights_bytes": weights_bytes, "io_bytes": io_bytes,
        "workspace_bytes": 0, "schedule": schedule_report,
    }


def _precision_of(node: Node) -> str:
    """The precision a layer computes in: its floating inputs' type (integer layers report their output)."""
    names = {v.dtype.value for v in node.inputs if v is not None and v.dtype.is_float}
    if not names:
        names = {v.dtype.value for v in node.outputs}
    if len(names) > 1:
        return "mixed"
    name = names.pop()
    return _PRECISION_NAMES.get(name, name)

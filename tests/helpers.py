"""Shared test helpers: random inputs, onnxruntime references, normwise error."""

from __future__ import annotations

import tracemalloc

import numpy as np

import edgert


def normwise_error(got: np.ndarray, ref: np.ndarray) -> float:
    """‖got − ref‖ / ‖ref‖ (absolute when ref is all zeros); NaN anywhere gives inf."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise AssertionError(f"shape {got.shape} != reference shape {ref.shape}")
    if np.isnan(got).any() or np.isnan(ref).any():
        return float("inf")
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(got - ref) / (denom if denom > 0 else 1.0))


def random_inputs(model, shapes=None, seed=None) -> dict[str, np.ndarray]:
    """Fresh random inputs for every non-initializer graph input (static dims, or ``shapes``)."""
    from onnx import helper
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for info in model.graph.input:
        if info.name in initializers:
            continue
        shape = (shapes or {}).get(info.name) or [d.dim_value for d in info.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[info.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[info.name] = rng.random(shape) > 0.5
        else:
            feeds[info.name] = rng.integers(0, 4, shape).astype(dtype)
    return feeds


def ort_run(model, feeds: dict) -> dict[str, np.ndarray]:
    import onnx
    import onnxruntime as ort
    from onnx import helper
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    # the IR version the opsets need, not the installed onnx's newest (an older onnxruntime, as on the GPU machine,
    # refuses a newer IR version than it knows)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.ir_version = min(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def edgert_run(model, feeds: dict, **build_options) -> dict[str, np.ndarray]:
    shapes = {k: v.shape for k, v in feeds.items()}
    plan = edgert.build(model, shapes=shapes, **build_options)
    return edgert.load(plan.to_bytes()).create_execution_context().execute(feeds)


def assert_matches_ort(model, feeds=None, tolerance=1e-5, **build_options) -> dict[str, float]:
    """Build and run ``model`` with edgert and onnxruntime; every output within ``tolerance`` normwise."""
    feeds = feeds if feeds is not None else random_inputs(model)
    ours = edgert_run(model, feeds, **build_options)
    ref = ort_run(model, feeds)
    errors = {}
    for name, want in ref.items():
        got = ours[name]
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != onnxruntime's {want.dtype}"
        errors[name] = normwise_error(got, want)
        assert errors[name] <= tolerance, f"{name}: normwise error {errors[name]:.3g} > {tolerance}"
    return errors


def op_model(op_type, inputs, attrs=None, opset=18, consts=(), num_outputs=1, infer=True, strict=False):
    """A one-node model. ``inputs``: (name, array) pairs in node order, (None, None) for an omitted input;
    names in ``consts`` become initializers, the others graph inputs. Returns (model, feeds)."""
    import onnx
    from onnx import helper
    graph_inputs, initializers, feeds = [], [], {}
    for name, array in inputs:
        if name is None:
            continue
        if name in consts:
            initializers.append(onnx.numpy_helper.from_array(np.asarray(array), name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape))
            feeds[name] = array
    outputs = [f"y{i}" for i in range(num_outputs)]
    node = helper.make_node(op_type, [name or "" for name, _ in inputs], outputs, **(attrs or {}))
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=n) for n in outputs],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    if infer:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=strict)
    return model, feeds


def assert_runs_allocate_nothing(context, limit: int = 200_000) -> None:
    """Every bound layer run of a CPU context allocates less than ``limit`` bytes at its peak (NumPy's own
    iterator buffers, at most 8192 elements per operand, stay below 200 KB)."""
    tracemalloc.start()
    try:
        with np.errstate(all="ignore"):
            for run in context._runs:
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                run()
                assert tracemalloc.get_traced_memory()[1] - before < limit
    finally:
        tracemalloc.stop()


def binds_with_module_on_and_off(monkeypatch, model, feeds: dict, output: str, binder: str) -> int:
    """Run ``model`` with the native module on, then off (``native.ENV_SWITCH``; layers bind their kernels when a
    context is created), each within 1e-5 of onnxruntime on ``output``; return how often ``native.<binder>`` was
    asked to bind a layer."""
    from edgert.kernels.cpu import native

    engine = edgert.load(edgert.build(model).to_bytes())
    want = ort_run(model, feeds)[output]
    calls = []
    real = getattr(native, binder)
    monkeypatch.setattr(native, binder, lambda *args: calls.append(1) or real(*args))
    for switch in ("1", "0"):
        monkeypatch.setenv(native.ENV_SWITCH, switch)
        assert normwise_error(engine.create_execution_context().execute(feeds)[output], want) <= 1e-5, switch
    return len(calls)

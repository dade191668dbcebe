"""Single convolution layers (with their activation) on the CPU: edgert with its native convolution kernels, edgert
with them off (``EDGERT_CPU_DIRECT=0``: im2col / BLAS products) and onnxruntime, interleaved in one process, medians.

    python benchmarks/cpu_layers.py [--threads 1] [--reps 200] [--only NAME ...]
    python benchmarks/cpu_layers.py --kernels [--reps 40]   # the native kernels alone, GFLOP/s, one thread
    python benchmarks/cpu_layers.py --split [--reps 150]    # the native kernels on one thread and on two, interleaved

``--kernels`` times the direct and pointwise convolution kernels on their own (best of --reps calls, one thread;
the pointwise ones beside NumPy's single-threaded OpenBLAS product of the same matrices: run it with
OPENBLAS_NUM_THREADS=1). The layers are the shapes that dominate the issue-16 models (MobileNet-v3 expand/project 1x1 convolutions, YOLO's
C2f 1x1 and 3x3 convolutions, the 96->24 3x3 one on 80x80).

``--split`` times the kernels that split themselves over native_parallel.c's threads (the largest layers of
LRASPP, YOLO and ViT-Ti/16: pointwise and direct convolutions, depthwise, matrix products with their epilogue, the
resize, softmax, GELU), each call alternating between one thread and two (``set_threads``), with the lag pause off
(it would make a loaded machine's runs inline): min and median of --reps calls each, and the speed-up of the mins.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

# name: (input channels, output channels, size, kernel, stride, activation, residual[, depthwise])
LAYERS = {
    "pw 16->72 @56 relu": (16, 72, 56, 1, 1, "Relu", False),
    "pw 72->24 @28": (72, 24, 28, 1, 1, None, False),
    "pw 24->96 @28 hswish": (24, 96, 28, 1, 1, "HardSwish", False),
    "pw 240->40 @14 +res": (240, 40, 14, 1, 1, None, True),
    "pw 40->240 @14 hswish": (40, 240, 14, 1, 1, "HardSwish", False),
    "pw 96->576 @7 hswish": (96, 576, 7, 1, 1, "HardSwish", False),
    "pw 576->96 @7 +res": (576, 96, 7, 1, 1, None, True),
    "pw 32->32 @80 silu": (32, 32, 80, 1, 1, "Silu", False),
    "pw 64->64 @40 silu": (64, 64, 40, 1, 1, "Silu", False),
    "pw 192->64 @40 silu": (192, 64, 40, 1, 1, "Silu", False),
    "pw 512->256 @10 silu": (512, 256, 10, 1, 1, "Silu", False),
    "pw 128->256 @20 s2": (128, 256, 40, 1, 2, None, False),
    "3x3 96->24 @80": (96, 24, 80, 3, 1, None, False),
    "3x3 64->64 @40 silu": (64, 64, 40, 3, 1, "Silu", False),
    "3x3 16->32 @160 s2 silu": (16, 32, 160, 3, 2, "Silu", False),
    "dw 3x3 16 @112 s2 relu": (16, 16, 112, 3, 2, "Relu", False, True),
    "dw 3x3 72 @56 s2 relu": (72, 72, 56, 3, 2, "Relu", False, True),
    "dw 5x5 96 @28 s2 hswish": (96, 96, 28, 5, 2, "HardSwish", False, True),
    "dw 5x5 240 @14 hswish": (240, 240, 14, 5, 1, "HardSwish", False, True),
    "dw 5x5 576 @7 hswish": (576, 576, 7, 5, 1, "HardSwish", False, True),
}


def layer_model(cin, cout, size, kernel, stride, activation, residual, depthwise=False):
    rng = np.random.default_rng(0)
    group = cin if depthwise else 1
    w = (rng.standard_normal((cout, cin // group, kernel, kernel)) * np.sqrt(2 / (cin // group * kernel * kernel))) \
        .astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[kernel] * 2, strides=[stride] * 2,
                              pads=[kernel // 2] * 4, group=group)]
    out = "y"
    if activation == "Silu":
        nodes += [helper.make_node("Sigmoid", ["y"], ["s"]), helper.make_node("Mul", ["y", "s"], ["a"])]
        out = "a"
    elif activation:
        nodes.append(helper.make_node(activation, ["y"], ["a"]))
        out = "a"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])]
    osize = (size - 1) // stride + 1
    if residual:
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, cout, osize, osize]))
        nodes.append(helper.make_node("Add", [out, "r"], ["z"]))
        out = "z"
    graph = helper.make_graph(nodes, "layer", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


DIRECT_KERNELS = [(64, 64, 40, 3, 1), (96, 24, 80, 3, 1), (16, 32, 160, 3, 2), (32, 32, 80, 3, 1), (128, 128, 20, 3, 1),
                  (64, 144, 40, 3, 1)]   # input channels, output channels, size, kernel, stride
POINTWISE_KERNELS = [(192, 64, 1600), (32, 32, 6400), (16, 72, 3136), (576, 96, 49), (96, 576, 49), (512, 256, 100),
                     (72, 24, 784), (64, 256, 3136), (1024, 256, 196)]   # input channels, output channels, columns


def best_of(call, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def kernels(reps: int) -> None:
    from edgert.kernels.cpu import native
    rng = np.random.default_rng(0)
    print(f"# native kernels alone, one thread, best of {reps}: {native.status()}")
    print("| kernel | µs | GFLOP/s | OpenBLAS µs | OpenBLAS GFLOP/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for cin, cout, size, k, stride in DIRECT_KERNELS:
        x = rng.standard_normal((1, cin, size, size)).astype(np.float32)
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
        osize = (size + 2 * (k // 2) - k) // stride + 1
        out = np.empty((1, cout, osize, osize), np.float32)
        params = ([k, k], [stride] * 2, [1, 1], [k // 2] * 2, [k // 2] * 2)
        run = native.bind_conv_direct(x, native.pack_direct_weights(w), np.zeros(cout, np.float32), out, params)
        seconds, flops = best_of(run, reps), 2 * cin * cout * k * k * osize * osize
        print(f"| direct {cin}->{cout} {k}x{k} s{stride} @{size} | {seconds * 1e6:.0f} | {flops / seconds / 1e9:.0f} | | |")
    for cin, cout, columns in POINTWISE_KERNELS:
        x = rng.standard_normal((cin, columns)).astype(np.float32)
        w = rng.standard_normal((cout, cin)).astype(np.float32)
        out = np.empty((cout, columns), np.float32)
        run = native.bind_conv_pointwise(x, native.pack_direct_weights(w[:, :, None, None]), None, out)
        seconds, flops = best_of(run, reps), 2 * cin * cout * columns
        blas = best_of(lambda: np.matmul(w, x, out=out), reps)
        print(f"| pointwise {cin}->{cout} x{columns} | {seconds * 1e6:.0f} | {flops / seconds / 1e9:.0f} | "
              f"{blas * 1e6:.0f} | {flops / blas / 1e9:.0f} |", flush=True)


def split_cases(rng) -> dict:
    """name -> bound native kernel, for --split: the largest layers of the issue-16 models."""
    from edgert.kernels.cpu import native, resize

    def randn(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    cases = {}
    for cin, cout, columns in [(160, 960, 400), (960, 160, 400), (64, 256, 6400)]:
        x, w, out = randn(cin, columns), randn(cout, cin), np.empty((cout, columns), np.float32)
        cases[f"pointwise {cin}->{cout} x{columns}"] = native.bind_conv_pointwise(
            x, native.pack_direct_weights(w[:, :, None, None]), randn(cout), out)
    for cin, cout, size, stride in [(64, 64, 40, 1), (80, 80, 80, 1), (16, 32, 320, 2)]:
        osize = (size - 1) // stride + 1
        x, w, out = randn(1, cin, size, size), randn(cout, cin, 3, 3), np.empty((1, cout, osize, osize), np.float32)
        params = ([3, 3], [stride] * 2, [1, 1], [1, 1], [1, 1])
        cases[f"direct 3x3 {cin}->{cout} s{stride} @{size}"] = native.bind_conv_direct(
            x, native.pack_direct_weights(w), randn(cout), out, params)
    for channels, size, stride in [(64, 160, 2), (240, 40, 1)]:
        osize = (size - 1) // stride + 1
        x, out = randn(1, channels, size, size), np.empty((1, channels, osize, osize), np.float32)
        cases[f"depthwise 3x3 {channels} s{stride} @{size}"] = native.bind_depthwise(
            x, randn(channels, 1, 3, 3), randn(channels), out, ([3, 3], [stride] * 2, [1, 1], [1, 1], [1, 1]))
    gelu = [{"op": "add", "input": 2}, {"op": "activation", "type": "gelu_erf"}]
    for (m, k, n), steps in [((197, 192, 768), gelu), ((197, 768, 192), []), ((197, 192, 576), [])]:
        a, b, out = randn(m, k), randn(k, n), np.empty((m, n), np.float32)
        cases[f"matmul {m}x{k} @ {k}x{n}" + (" +bias +GELU" if steps else "")] = \
            native.bind_gemm(a, False, b, False, out, steps, [a, b, randn(n)])[0]
    x, out = randn(1, 21, 40, 40), np.empty((1, 21, 320, 320), np.float32)
    cases["resize linear 21x40x40 -> 320x320"] = resize.prepare_resize(
        {"mode": "linear", "coordinate_mode": "pytorch_half_pixel", "out_shape": list(out.shape),
         "scales": [1, 1, 8.0, 8.0]}, [x], [out], None)
    x = randn(3, 197, 197)
    cases["softmax 3x197x197"] = native.bind_softmax(x, np.empty_like(x), (2,))
    x = randn(197 * 768)
    cases["GELU x151k"] = native.bind_program([{"kind": "Activation", "attrs": {"type": "gelu_erf"}, "args": [0]}],
                                              [x], np.empty_like(x))
    return cases


def split(reps: int) -> None:
    from edgert.kernels.cpu import native
    print(f"# native kernels on 1 and 2 threads, alternating call by call, {reps} calls each, lag pause off: "
          f"{native.status()}")
    print("| kernel | 1 thread µs (min / p50) | 2 threads µs (min / p50) | min 1 / min 2 |")
    print("| --- | ---: | ---: | ---: |")
    for name, run in split_cases(np.random.default_rng(0)).items():
        times = {1: [], 2: []}
        for _ in range(reps):
            for count in (1, 2):
                native._native.set_threads(count, lag=0)
                started = time.perf_counter()
                run()
                times[count].append(time.perf_counter() - started)
        one, two = (min(times[c]) * 1e6 for c in (1, 2))
        print(f"| {name} | {one:.0f} / {statistics.median(times[1]) * 1e6:.0f} | {two:.0f} / "
              f"{statistics.median(times[2]) * 1e6:.0f} | {one / two:.2f}x |", flush=True)
    native._native.set_threads(1, lag=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--kernels", action="store_true", help="the native kernels alone (one thread)")
    parser.add_argument("--split", action="store_true", help="the native kernels on one thread and two")
    args = parser.parse_args()
    os.environ["EDGERT_CPU_THREADS"] = "1" if args.kernels else "2" if args.split else str(args.threads)
    if args.kernels:
        kernels(args.reps)
        return
    if args.split:
        split(args.reps)
        return
    import onnxruntime as ort

    import edgert
    from edgert.kernels.cpu import native
    print(f"# {args.threads} thread(s), medians of {args.reps} interleaved runs, µs; edgert: {native.status()}")
    print("| layer | edgert native | edgert off | ort | native / ort | native / off |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, spec in LAYERS.items():
        if args.only and name not in args.only:
            continue
        model = layer_model(*spec)
        engine = edgert.load(edgert.build(model))
        rng = np.random.default_rng(1)
        feeds = {b.name: rng.standard_normal(b.shape).astype(np.float32) for b in engine.inputs}
        on = engine.create_execution_context()
        os.environ[native.DIRECT_SWITCH] = "0"
        off = engine.create_execution_context()
        del os.environ[native.DIRECT_SWITCH]
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        runs = {"on": on.execute, "off": off.execute, "ort": lambda f: session.run(None, f)}
        times = {key: [] for key in runs}
        for _ in range(5):
            for run in runs.values():
                run(feeds)
        for _ in range(args.reps):
            for key, run in runs.items():
                started = time.perf_counter()
                run(feeds)
                times[key].append(time.perf_counter() - started)
        p50 = {key: statistics.median(value) * 1e6 for key, value in times.items()}
        print(f"| {name} | {p50['on']:.1f} | {p50['off']:.1f} | {p50['ort']:.1f} | {p50['on'] / p50['ort']:.2f}x | "
              f"{p50['on'] / p50['off']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

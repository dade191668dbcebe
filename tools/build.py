"""edgert build MODEL -o PLAN: import, optimize and write a plan."""

from __future__ import annotations

import argparse
import os
import time

from edgert.tools.args import add_shape_options, check_output_file, parse_shapes, require_modules
from edgert.tools.memory import report, summary_line
from edgert.tools.profile_args import add_profile_options, parse_profiles

HELP = "build a plan from an ONNX model"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("-o", "--output", required=True, help="plan file to write")
    add_shape_options(parser)
    add_profile_options(parser)
    parser.add_argument("--target", default="host", help="device profile to build for (default: host)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                        help="build precision (the DLA runs fp16 and int8 only)")
    parser.add_argument("--dla-core", type=int, default=None, metavar="N", help="make DLA core N the default device")
    parser.add_argument("--gpu-fallback", action="store_true",
                        help="run layers the DLA cannot run on the GPU instead of failing the build")
    parser.add_argument("--placement", metavar="FILE", help="TOML placement rules (layer-name globs or kinds)")
    parser.add_argument("--calib", metavar="DIR", help="int8 calibration batches (.npy/.npz files)")
    parser.add_argument("--calibrator", default="entropy", choices=("entropy", "minmax", "percentile"),
                        help="how activation ranges become int8 scales (default: entropy)")
    parser.add_argument("--calib-cache", metavar="FILE",
                        help="calibration cache: used when it exists (no calibration run), written otherwise")
    parser.add_argument("--int8-codes", action=argparse.BooleanOptionalAction, default=None,
                        help="int8 tensors (codes + scale) between int8 layers, Reformat layers where precision "
                             "changes (default: on for int8 plans without CUDA kernels; --gpu-kernels plans: when given)")
    parser.add_argument("--gpu-kernels", action="store_true",
                        help="cross-compile CUDA kernels for the target's GPU into the plan (experimental)")
    parser.add_argument("--timing-cache", metavar="FILE",
                        help="choose GPU tactics by the timings in FILE (recorded on the device by `edgert tune`; "
                             "implies --gpu-kernels; autotuned timings are added to it)")
    parser.add_argument("--autotune", action=argparse.BooleanOptionalAction, default=None,
                        help="time candidate tactics on this machine's GPU (default: when it has one of the "
                             "plan's arch); without timings the cost model of the target profile decides")
    parser.add_argument("--tf32", action="store_true",
                        help="run fp32 convolutions and matrix products on tf32 tensor cores (sm_80+; inputs "
                             "rounded to 10 mantissa bits: ~1e-3 normwise instead of fp32's 1e-4)")
    parser.add_argument("--max-arena", metavar="SIZE",
                        help="largest activation arena the plan may need, e.g. 2GiB (default: 16 GiB for host, "
                             "half the target's memory for a device)")
    parser.add_argument("--max-aux-streams", type=int, default=None, metavar="N",
                        help="run independent branches on up to N auxiliary CUDA streams (TensorRT's "
                             "maxAuxStreams; default 0: one stream)")
    parser.add_argument("--input-format", action="append", default=[], metavar="NAME=FORMAT",
                        help="bind input NAME as fp16 or int8 (codes at its calibrated scale) instead of fp32, so the "
                             "plan's conversion layer goes (like trtexec --inputIOFormats; FORMAT: fp32|fp16|int8, "
                             "optionally :linear; repeatable)")
    parser.add_argument("--output-format", action="append", default=[], metavar="NAME=FORMAT",
                        help="bind output NAME as fp16 or int8 (the codes its int8 layer writes, at that layer's "
                             "scale) instead of fp32 (like trtexec --outputIOFormats; repeatable)")
    parser.add_argument("--no-opt", action="append", default=[], metavar="PASS",
                        help="disable one graph pass (repeatable); 'all' disables every pass")


def build_config(args):
    """The typed build settings (``BuildConfig``) of the command line's flags."""
    from edgert.build_options import BuildConfig

    return BuildConfig.from_options(
        target=args.target, precision=args.precision, optimize="all" not in args.no_opt,
        disabled_passes=[p for p in args.no_opt if p != "all"], dla_core=args.dla_core, gpu_fallback=args.gpu_fallback,
        placement=args.placement, calib=args.calib, calibrator=args.calibrator, calib_cache=args.calib_cache,
        gpu_kernels=args.gpu_kernels or None, timing_cache=args.timing_cache, autotune=args.autotune,
        tf32=args.tf32 or None, max_arena=args.max_arena, max_aux_streams=args.max_aux_streams,
        int8_codes=args.int8_codes, input_formats=args.input_format or None,
        output_formats=args.output_format or None)


def main(args) -> int:
    require_modules("build", "onnx")
    check_output_file(args.output, "-o")
    import edgert
    from edgert.runtime.shapes import format_range

    started = time.perf_counter()
    plan = edgert.build(args.model, shapes=parse_shapes(args.shape), profiles=parse_profiles(args),
                        config=build_config(args))
    plan.save(args.output)
    seconds = time.perf_counter() - started
    size = os.path.getsize(args.output)
    print(f"built {args.output}: {len(plan.layers)} layers, {size / 1024:.1f} KiB, target {args.target}, "
          f"{seconds:.2f} s")
    print(summary_line(report(plan.document)))
    for index, profile in enumerate(plan.document.get("profiles") or []):
        print(f"profile {index}: " + ", ".join(f"{name} {format_range(r['min'], r['max'])} (opt "
                                               f"{'x'.join(map(str, r['opt']))})" for name, r in profile["inputs"].items()))
    for arch, sources in plan.header.get("tactics", {}).items():
        counts = ", ".join(f"{count} {source}" for source, count in sources.items()) or "no choices"
        print(f"tactics for {arch}: {counts}")
    if args.verbose:
        for name, count in plan.header.get("passes", {}).items():
            print(f"  pass {name}: {count} rewrite{'s' if count != 1 else ''}")
    return 0

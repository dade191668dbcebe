"""edgert partition MODEL --target T: where each layer would run (GPU / DLA core) and why, before any build."""

from __future__ import annotations

import json

from edgert.tools.args import add_shape_options, parse_shapes, require_modules

HELP = "show where each layer would run on a target (GPU or DLA) and why, with predicted times"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("--target", required=True, help="device profile (see `edgert targets`)")
    parser.add_argument("--dla-core", type=int, default=None, metavar="N",
                        help="make DLA core N the default device (default: the GPU)")
    parser.add_argument("--gpu-fallback", action="store_true",
                        help="run layers the DLA cannot run on the GPU instead of failing")
    parser.add_argument("--placement", metavar="FILE",
                        help="TOML placement rules pinning layers (name globs or kinds) to gpu / dla")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                        help="build precision to plan for (default fp32, as for build; the DLA runs only fp16 "
                             "and int8)")
    add_shape_options(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_throughput_arguments(parser)


def _add_throughput_arguments(parser) -> None:
    group = parser.add_argument_group("throughput (engines working at once on different requests, as MLPerf offline)")
    group.add_argument("--throughput", action="store_true",
                       help="instead of the placement, predict images/s with every engine running its own copy")
    group.add_argument("--engines", default="all", metavar="LIST",
                       help="engines for --throughput: comma-separated gpu, dla0, dla1 ... or 'all' (default)")
    group.add_argument("--gpu-batch", type=int, default=256, metavar="N", help="GPU batch for --throughput (256)")
    group.add_argument("--dla-batch", type=int, default=2, metavar="N", help="DLA batch for --throughput (2)")
    group.add_argument("--dla-sparse", action="store_true",
                       help="for --throughput: the DLA engines run 2:4 structured-sparse weights (TensorRT "
                            "--sparsity=force; twice the MAC rate for their convolutions, compressed weights); "
                            "the weights are not checked for the pattern")


def main(args) -> int:
    require_modules("partition", "onnx")
    from edgert.onnx.importer import import_model
    from edgert.partitioner.assign import partition
    from edgert.passes import optimize

    graph = import_model(args.model, parse_shapes(args.shape))
    graph.verify()
    optimize(graph)
    if args.throughput:
        return _throughput(graph, args)
    report = partition(graph, args.target, dla_core=args.dla_core, gpu_fallback=args.gpu_fallback,
                       placement=args.placement, precision=args.precision)
    from edgert.builder import warn_unused_dla
    warn_unused_dla(report, args.dla_core, args.precision)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format())
    return 0


def _throughput(graph, args) -> int:
    from edgert.partitioner.throughput import parse_engines, throughput
    from edgert.targets import load_profile
    from edgert.tools.args import UsageError

    if args.gpu_batch < 1 or args.dla_batch < 1:
        raise UsageError(f"--gpu-batch and --dla-batch must be at least 1 (found {args.gpu_batch}, {args.dla_batch})")
    profile = load_profile(args.target)
    report = throughput(graph, profile, parse_engines(args.engines, profile), args.precision,
                        args.gpu_batch, args.dla_batch, sparse=args.dla_sparse)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0

"""edgert triton PLAN... -o REPO: a Triton Inference Server model repository serving the plans."""

from __future__ import annotations

HELP = "write a Triton Inference Server model repository (Python backend) that serves the plans"


def add_arguments(parser) -> None:
    parser.add_argument("plans", nargs="+", metavar="PLAN", help="plan files (one Triton model each)")
    parser.add_argument("-o", "--output", required=True, metavar="REPO", help="model repository folder")
    parser.add_argument("--name", action="append", default=[], help="model name, one per plan (default: file name)")
    parser.add_argument("--max-batch-size", type=int, default=None, metavar="B",
                        help="Triton max_batch_size (default: the profile's largest batch; 0 without a batch dim)")
    parser.add_argument("--instances", type=int, default=1, metavar="K", help="model instances (processes)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "cuda:pycuda"],
                        help="where each instance runs the plan")
    parser.add_argument("--dynamic-batching", action="store_true", help="let Triton batch concurrent requests")
    parser.add_argument("--max-queue-delay-us", type=int, default=None, metavar="U",
                        help="how long Triton may hold a request to form a batch")
    parser.add_argument("--preferred-batch-size", type=int, action="append", default=[], metavar="B",
                        help="batch sizes Triton aims for (repeatable)")


def main(args) -> int:
    from edgert.triton import write_repository

    if (args.max_queue_delay_us is not None or args.preferred_batch_size) and not args.dynamic_batching:
        from edgert.tools.args import UsageError
        raise UsageError("--max-queue-delay-us and --preferred-batch-size need --dynamic-batching")
    written = write_repository(args.plans, args.output, names=args.name or None, max_batch_size=args.max_batch_size,
                               instances=args.instances, device=args.device, dynamic_batching=args.dynamic_batching,
                               max_queue_delay_us=args.max_queue_delay_us,
                               preferred_batch_sizes=args.preferred_batch_size)
    for version_dir in written:
        print(f"wrote {version_dir.parent.name} version {version_dir.name}: {version_dir.parent / 'config.pbtxt'}, "
              f"{version_dir / 'model.py'}, {version_dir / 'model.plan'}")
    print(f"serve with: tritonserver --model-repository={args.output}")
    return 0

"""edgert tune MODEL --timing-cache FILE: time the candidate tactics of a model's convolutions and matrix
products on this machine's GPU and record them in a timing cache (a new file, or added to FILE), for
`edgert build --timing-cache FILE` here or when cross-building for this device on another machine.

The model is built as `edgert build` would (same --shape, --precision, --placement, --target), so its
layers have the keys that build will look up; layers already in the cache are skipped unless
--retune. Prints, per layer key, the fastest tactic against the cost model's pick.
"""

from __future__ import annotations

import os

from edgert.errors import DeviceError, EdgeRTError
from edgert.tools.args import add_shape_options, parse_shapes

HELP = "time GPU tactics of a model's layers on this machine's GPU into a timing cache"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="ONNX model file")
    add_shape_options(parser)
    parser.add_argument("--timing-cache", required=True, metavar="FILE",
                        help="timing cache to write (extended when it exists; it must be of this GPU)")
    parser.add_argument("--target", default="host",
                        help="device profile the plans will be built for; its GPU must be this one (default: host)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="build precision")
    parser.add_argument("--placement", metavar="FILE", help="TOML placement / precision rules, as for build")
    parser.add_argument("--candidates", type=int, default=0, metavar="N",
                        help="time only the cost model's best N tactics per layer (default: all)")
    parser.add_argument("--samples", type=int, default=10, help="timings per tactic; the median counts (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per tactic first (default 3)")
    parser.add_argument("--retune", action="store_true", help="time layers the cache already has again")


def tune_model(model, cache_path: str, driver, *, shapes=None, target: str = "host", precision: str = "fp32",
               placement=None, candidates: int = 0, samples: int = 10, warmup: int = 3, retune: bool = False,
               timer=None, log=None):
    """Build ``model``, time its GEMM layers' tactics on ``driver``'s GPU, write the cache; the results."""
    import edgert
    from edgert.kernels.cuda.autotune import device_info, gpu_rates, tune_plan
    from edgert.kernels.cuda.compile import normalize_arch
    from edgert.kernels.cuda.timing_cache import TimingCache, TimingCacheError
    from edgert.targets import load_profile

    arch, profile = normalize_arch(driver.arch()), load_profile(target)
    if profile.gpu is None or normalize_arch(profile.gpu.arch) != arch:
        found = profile.gpu.arch if profile.gpu is not None else "no GPU"
        raise EdgeRTError(f"target {target!r} has {found}, but this GPU ({driver.device_name()}) is {arch}: tune on "
                          "the device the plans are for, with its --target (or host)")
    device = device_info(driver)
    cache = TimingCache(device)
    if os.path.exists(cache_path):
        cache = TimingCache.load(cache_path, arch=arch)
        if cache.device.get("name") != device["name"]:
            raise TimingCacheError(f"timing cache {cache_path} holds timings of {cache.describe()}, this GPU is "
                                   f"{device['name']}: keep one timing cache per GPU (give another FILE)")
    plan = edgert.build(model, shapes=shapes, target=target, precision=precision, placement=placement)
    results = tune_plan(plan.document, driver, gpu=gpu_rates(arch, profile), timer=timer, warmup=warmup,
                        samples=samples, max_candidates=candidates or None, skip=() if retune else cache.entries,
                        log=log)
    for key, result in results.items():
        cache.record(key, result.timings)
    cache.save(cache_path)
    return cache, results


def report_lines(results: dict) -> list[str]:
    """One line per layer key: fastest tactic and time, the cost model's pick and how much slower it is."""
    lines = []
    for result in results.values():
        fastest = result.fastest
        best, picked = result.timings[fastest], result.timings[result.default]
        rejected = f", {len(result.rejected)} rejected (wrong output)" if result.rejected else ""
        lines.append(f"  {result.layer[:40]:40}  {fastest:38} {best:9.1f} us   cost model {result.default:38} "
                     f"{picked / best:5.2f}x{rejected}")
    return lines


def main(args) -> int:
    from edgert.kernels.cuda.autotune import local_gpu

    driver = local_gpu()
    if driver is None:
        raise DeviceError("edgert tune needs a CUDA GPU on this machine (cupy and a visible device); run it on the "
                          "device the plans are for, then build anywhere with --timing-cache")
    cache, results = tune_model(args.model, args.timing_cache, driver, shapes=parse_shapes(args.shape),
                                target=args.target, precision=args.precision, placement=args.placement,
                                candidates=args.candidates, samples=args.samples, warmup=args.warmup,
                                retune=args.retune, log=print if args.verbose else None)
    for line in report_lines(results):
        print(line)
    timed = sum(len(r.timings) for r in results.values())
    print(f"tuned {len(results)} layer keys ({timed} tactics timed) on {cache.describe()}; "
          f"{args.timing_cache} holds {len(cache.entries)} keys")
    return 0

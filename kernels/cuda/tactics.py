"""Tactics of the CUDA backend: the ways one layer can be lowered, a cost model of their times on a
target GPU, the key a layer's measured timings are cached under, and the policies that pick one
tactic per layer while a plan is lowered.

A convolution or matrix product lowered to the GEMM templates of ``gemm.cuh`` (see ``lower_gemm``)
is a ``GemmProblem``; its tactics (``GemmTactic``) are every valid combination of

- the block tile BM x BN, each in {32, 64, 128}: none larger than the problem needs, the FMA
  kernel's 1x1-convolution vector loader only with BN >= 64, and the double-buffered tiles within
  the 48 KiB of shared memory a kernel may declare statically;
- the number of blocks K is split over (1 to 16; 1 alone where the lowering forbids splitting:
  batched products, grouped convolutions, fp64), counted as the kernel runs it (whole K tiles per
  block, so asking for 5 splits of 9 tiles gives 3 per block and 3 blocks: ``splitk3``);
- the B loader where the lowering has a real alternative: a 1x1 convolution reads pixels in
  16-byte vectors (``conv1x1``) or through the im2col table (``implicit-gemm``); a convolution whose
  channels fill whole K tiles reads its weights tap-major (``implicit-gemm-tap``) or uses the table.

Every other layer kind has one tactic, its lowering's. A tactic is named like its launch, e.g.
``implicit-gemm-tap mma 64x64 splitk4``; the name is what a timing cache stores.

Choosing: the lowering context's ``tactic_policy`` decides (``select``). ``TimingPolicy`` takes the
fastest measured candidate from timings (a timing cache recorded on the device by `edgert tune`,
or this build's autotuning) and otherwise asks its fallback; ``CostModel`` is the last resort.
``Recorder`` wraps a policy and keeps every decision with its source, for the plan's layer table.

The cost model decides with the tile rule that the lowering used before tactics existed (measured
against PyTorch on an H200, docs/benchmarks.md), from the target's SM count: the biggest tile that
still gives every SM a block, else 64x64 (smaller for a dimension under 64), then K split over
enough blocks to give each SM about two; on tensor cores that tile then takes 32x16 warp tiles and
the double-depth K tile where the templates allow them (on the H200's fp16 timings of ResNet-50's 50
layer keys this sums to 0.82x the rule's plain kernels; autotuning reaches 0.64x). Its estimates (``estimate_us``) rank all candidates,
decide where the rule's pick cannot be instantiated (fp64 tiles whose shared memory does not fit)
and order the candidates ``edgert tune`` times. An estimate counts the multiply-accumulates of the
busiest SM's blocks at the engine's rate (tensor cores or FMA lanes, from the target profile),
discounted for the tile's operand loads and the loader; blocks run in groups of as many as fit on
an SM, and an SM reaches its rate only with enough warps in flight to hide memory latency; each
block pays a fixed start and end, a split tile the sum of its partials; the DRAM bytes moved
(operands, output, split-K partials) at the GPU's bandwidth are a floor. Its constants are not yet
fitted to measurements: `edgert tune` prints how far each layer's rule pick is from the fastest.

A layer's key (``GemmProblem.key``) holds everything that fixes its kernels and their speed: arch,
operation, dtype (``float32+tf32`` for the tf32 kernels), M, N, K, batch count, whether K may split, the algorithms it may use, the
geometry and alignment facts the kernel depends on, and the epilogue (its functor name hashes its
code), e.g. ``sm_90|conv|float16|M64 N3136 K576 Z1|split|implicit-gemm-tap,implicit-gemm|...|Epi_3f0c``.
Layers with one key share timings, in one model or across models.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, NamedTuple

TILES = (32, 64, 128)
SPLITS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)
MAX_STATIC_SMEM = 48 * 1024
SOURCES = ("timing-cache", "autotune", "cost-model")
_ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "int8": 1}
# Shared memory an SM offers its resident blocks, KiB (CUDA programming guide, per compute capability).
_SMEM_PER_SM_KIB = {75: 64, 80: 164, 86: 100, 87: 164, 89: 100, 90: 228, 100: 228, 110: 228, 120: 100}
# For a GPU known only by its arch: dense fp16 tensor-core MACs per SM per clock (as targets.profiles),
# fp32 lanes per SM, clock GHz, DRAM bytes per SM per clock (typical parts: T4, A100, A10, Orin, L4,
# H100, B200, Thor, RTX 5090).
_ARCH_DEFAULTS = {75: (512, 64, 1.6, 11.0), 80: (1024, 64, 1.4, 13.0), 86: (512, 128, 1.7, 5.5),
                  87: (1024, 128, 1.3, 9.8), 89: (512, 128, 2.5, 3.0), 90: (2048, 128, 1.75, 14.5),
                  100: (4096, 128, 1.9, 27.0), 110: (4096, 128, 1.57, 8.6), 120: (1024, 128, 2.6, 4.0)}


@dataclasses.dataclass(frozen=True)
class GpuRates:
    """What the cost model knows about one GPU."""
    arch: int
    sm_count: int
    clock_ghz: float
    mma_macs: float          # dense fp16 tensor-core multiply-accumulates per SM per clock
    fma_lanes: float         # fp32 fused multiply-adds per SM per clock
    dram_gbs: float
    smem_per_sm: int         # bytes of shared memory for resident blocks

    @classmethod
    def for_arch(cls, arch: int, sm_count: int) -> "GpuRates":
        mma, lanes, clock, bytes_per_clock = _ARCH_DEFAULTS.get(arch, (1024, 128, 1.5, 10.0))
        return cls(arch, sm_count, clock, mma, lanes, bytes_per_clock * sm_count * clock,
                   _SMEM_PER_SM_KIB.get(arch, 100) * 1024)

    @classmethod
    def from_profile(cls, profile) -> "GpuRates":
        """Rates of a ``targets.profiles.TargetProfile``'s GPU (the arch's defaults for what it lacks)."""
        gpu = profile.gpu
        base = cls.for_arch(int(gpu.arch.split("_")[1].rstrip("af")), gpu.sm_count or 1)
        clock = gpu.max_clock_mhz / 1e3 or base.clock_ghz
        per_clock = base.sm_count * clock * 1e9

        def rate(tflops, default):
            return tflops * 1e12 / 2 / per_clock if tflops else default
        return dataclasses.replace(base, clock_ghz=clock, mma_macs=rate(gpu.fp16_dense_tflops, base.mma_macs),
                                   fma_lanes=rate(gpu.fp32_tflops, base.fma_lanes),
                                   dram_gbs=profile.memory_bandwidth_gbs or base.dram_gbs)


@dataclasses.dataclass(frozen=True)
class GemmProblem:
    """One GEMM-lowered layer, as far as choosing its tactic goes."""
    arch: int
    op: str                  # "conv" | "matmul"
    dtype: str
    engine: str              # "mma" (fp16 or, dtype int8, s8 tensor cores) | "tf32" (fp32 on tensor cores) | "fma"
                             # | "dp4a" (int8 dot products on CUDA cores)
    bk: int                  # the kernel's K tile
    M: int
    N: int
    K: int
    Z: int                   # independent products (batch entries, groups)
    allow_split: bool
    algorithms: tuple        # ((loader, algorithm name), ...), the lowering's preference first
    signature: tuple = ()    # further facts that fix the kernel (geometry, alignment), as strings
    epilogue: str = ""
    tap_channels: int = 0    # channels per group for the tap-major loader (its K tile must divide them)

    @property
    def key(self) -> str:
        dtype = f"{self.dtype}+tf32" if self.engine == "tf32" else self.dtype   # tf32 kernels time differently
        parts = [f"sm_{self.arch}", self.op, dtype, f"M{self.M} N{self.N} K{self.K} Z{self.Z}",
                 "split" if self.allow_split else "nosplit", ",".join(name for _, name in self.algorithms)]
        return "|".join(parts + [str(s) for s in self.signature] + [self.epilogue])

    @property
    def k_tiles(self) -> int:
        return self.k_tiles_of(self.bk)

    def k_tiles_of(self, bk: int) -> int:
        return max(1, math.ceil(self.K / bk))

    @property
    def k_tile_options(self) -> tuple:
        """K tiles the kernels offer: tensor-core kernels also a double-depth one (twice the bytes per
        load round trip, twice the registers), the FMA kernel its one."""
        return (self.bk,) if self.engine == "fma" or self.dtype == "int8" else (self.bk, 2 * self.bk)

    def effective_splits(self, splits: int, bk: int | None = None) -> int:
        """How many blocks K really spreads over when asked for ``splits`` (whole K tiles each)."""
        if not self.allow_split:
            return 1
        k_tiles = self.k_tiles_of(bk or self.bk)
        per_split = math.ceil(k_tiles / max(1, splits))
        return math.ceil(k_tiles / per_split)


@dataclasses.dataclass(frozen=True)
class GemmTactic:
    bm: int
    bn: int
    splits: int
    loader: str
    name: str
    bk: int = 0
    nj: int = 4              # tensor-core kernels: n8 fragments per warp (4: 32x32 warp tiles, 2: 32x16)


def make_tactic(problem: GemmProblem, bm: int, bn: int, splits: int, loader: str, bk: int | None = None,
                nj: int = 4) -> GemmTactic:
    """The tactic, named like its launch; a K tile other than the engine's usual one is named (``bk64``),
    and so are narrow warp tiles (``w16``: twice the warps on the block tile)."""
    bk = bk or problem.bk
    splits = problem.effective_splits(splits, bk)
    depth = f" bk{bk}" if bk != problem.bk else ""
    warps = " w16" if nj == 2 else ""
    name = f"{dict(problem.algorithms)[loader]} {problem.engine} {bm}x{bn}{warps}{depth} splitk{splits}"
    return GemmTactic(bm, bn, splits, loader, name, bk, nj)


def smem_bytes(problem: GemmProblem, bm: int, bn: int, bk: int | None = None) -> int:
    """Static shared memory of the kernel's double-buffered A and B tiles (as gemm.cuh declares them)."""
    itemsize, bk = _ITEMSIZE[problem.dtype], bk or problem.bk
    if problem.dtype == "int8":   # int8.cuh: words of four k, rows padded by 8 words
        return 2 * 4 * (bk // 4) * ((bm + 8) + (bn + 8))
    if problem.engine == "fma":
        return 2 * itemsize * bk * ((bm + 4) + (bn + 4))
    a_pad = 8 if problem.dtype == "float16" else 4
    return 2 * itemsize * (bm * (bk + a_pad) + bk * (bn + 8))


def threads(problem: GemmProblem, bm: int, bn: int, nj: int = 4) -> int:
    if problem.engine == "dp4a":
        return bm * bn // 16   # 4x4 outputs per thread
    return 256 if problem.engine == "fma" else (bm // 32) * (bn // (8 * nj)) * 32


def _size_ok(problem: GemmProblem, bm: int, bn: int) -> bool:
    """The int8 kernels' tile limits: dp4a up to 64x64 (256 threads), s8 tensor cores up to 8 warps."""
    if problem.dtype != "int8":
        return True
    return max(bm, bn) <= 64 if problem.engine == "dp4a" else bm * bn <= 8192


def tile_ok(problem: GemmProblem, bm: int, bn: int, loader: str, bk: int | None = None) -> bool:
    """True when the templates instantiate for this tile and loader (their static_asserts and limits)."""
    bk = bk or problem.bk
    if not _size_ok(problem, bm, bn):
        return False
    if problem.dtype == "int8" and loader in ("pointwise", "rows4") and threads(problem, bm, bn) // (bn // 4) > bk // 4:
        return False   # I8Pixels4 / I8Rows4: a thread per four columns, at most the K tile's words of rows
    if problem.engine == "fma" and loader == "pointwise" and bn < 64:
        return False   # BPointwiseConv with 256 threads needs BN / VEC >= 16 columns
    if loader == "tapmajor" and (not problem.tap_channels or problem.tap_channels % bk):
        return False   # a tap-major K tile is channels of one tap
    return smem_bytes(problem, bm, bn, bk) <= MAX_STATIC_SMEM


def _warp_widths(problem: GemmProblem, bm: int, bn: int, loader: str, bk: int) -> tuple:
    """n8 fragments per warp the tensor-core kernel may use for this tile: 32-wide warp tiles, and
    16-wide ones (twice the warps, half the registers each) while the block stays within 256 threads
    and the 1x1 vector loader still has a row of the K tile per thread group (its static_assert)."""
    if problem.engine in ("fma", "dp4a") or problem.dtype == "int8":
        return (4,)
    vec = 16 // _ITEMSIZE[problem.dtype]
    narrow = threads(problem, bm, bn, 2) <= 256 and not (loader == "pointwise" and
                                                          threads(problem, bm, bn, 2) * vec // bn > bk)
    return (4, 2) if narrow else (4,)


def _fit(dim: int) -> int:
    return 32 if dim <= 32 else 64 if dim <= 64 else 128


def candidates(problem: GemmProblem) -> list[GemmTactic]:
    """Every valid tactic once, in a stable order (the lowering's preferred loader first)."""
    found: dict[str, GemmTactic] = {}
    for loader, _ in problem.algorithms:
        for bm in TILES:
            for bn in TILES:
                for bk in problem.k_tile_options:
                    if bm > _fit(problem.M) or bn > _fit(problem.N) or not tile_ok(problem, bm, bn, loader, bk):
                        continue
                    for nj in _warp_widths(problem, bm, bn, loader, bk):
                        for splits in SPLITS if problem.allow_split else (1,):
                            tactic = make_tactic(problem, bm, bn, splits, loader, bk, nj)
                            found.setdefault(tactic.name, tactic)
    return list(found.values())


# -- cost model ------------------------------------------------------------------------------------
# Warps an SM needs in flight to reach its rate: one 64x64 tensor-core block has 4, one FMA block 8,
# and either needs a second block on the SM to hide its loads.
_SATURATING_WARPS = {"mma": 8, "tf32": 8, "fma": 16, "dp4a": 16}
_TILE_LOAD_COST = 16.0       # tile efficiency 1 / (1 + c (1/BM + 1/BN)): small tiles re-read operands
_LOADER_EFFICIENCY = {"pointwise": 1.0, "tapmajor": 1.0, "strided_vec": 1.0, "im2col": 0.85, "strided": 0.75}
_BLOCK_FIXED_CYCLES = 1500   # a block's prologue (first tile's loads) and epilogue
_SPLIT_FIXED_CYCLES = 2500   # the last block of a split tile sums the partials and runs the epilogue
_LAUNCH_US = 2.0


def _sm_rate(problem: GemmProblem, gpu: GpuRates) -> float:
    """Multiply-accumulates per SM per clock of the problem's engine."""
    if problem.engine == "mma":
        return gpu.mma_macs * (2 if problem.dtype == "int8" else 1)   # s8 tensor cores: twice fp16's rate
    if problem.engine == "dp4a":
        return gpu.fma_lanes * 4 / 2   # four MACs per dp4a, at half the FMA issue rate
    if problem.engine == "tf32":
        return gpu.mma_macs / 2
    return gpu.fma_lanes / (2 if problem.dtype == "float64" else 1)


def estimate_us(problem: GemmProblem, tactic: GemmTactic, gpu: GpuRates) -> float:
    """The cost model's time for ``tactic`` on ``gpu``, microseconds (see the module docstring)."""
    bm, bn, splits = tactic.bm, tactic.bn, tactic.splits
    blocks = math.ceil(problem.M / bm) * math.ceil(problem.N / bn) * problem.Z * splits
    k_len = math.ceil(problem.k_tiles_of(tactic.bk) / splits) * tactic.bk
    efficiency = _LOADER_EFFICIENCY.get(tactic.loader, 1.0) / (1 + _TILE_LOAD_COST * (1 / bm + 1 / bn))
    block_cycles = bm * bn * k_len / (_sm_rate(problem, gpu) * efficiency) + _BLOCK_FIXED_CYCLES
    warps = threads(problem, bm, bn, tactic.nj) // 32
    resident = max(1, min(2048 // threads(problem, bm, bn, tactic.nj),
                          gpu.smem_per_sm // smem_bytes(problem, bm, bn, tactic.bk),
                          16))
    left, cycles = math.ceil(blocks / gpu.sm_count), 0.0
    while left > 0:   # the busiest SM's blocks, in groups of as many as fit at once
        group = min(left, resident)
        cycles += group * block_cycles / min(1.0, group * warps / _SATURATING_WARPS[problem.engine])
        left -= group
    if splits > 1:
        cycles += _SPLIT_FIXED_CYCLES
    itemsize = _ITEMSIZE[problem.dtype]
    moved = itemsize * problem.Z * (problem.M * problem.K + problem.K * problem.N + problem.M * problem.N)
    if splits > 1:
        moved += 2 * 4 * splits * problem.M * problem.N * problem.Z   # fp32 partials written and read back
    return _LAUNCH_US + max(cycles / (gpu.clock_ghz * 1e3), moved / (gpu.dram_gbs * 1e3))


def _latency_hiding(problem: GemmProblem, bm: int, bn: int, loader: str) -> tuple[int, int]:
    """(K tile, n8 fragments per warp) for the rule's tile: on tensor cores twice the warps (32x16 warp
    tiles) and a K tile twice as deep where the templates allow, which is what the H200's timings
    preferred on 41 and 40 of 50 layer keys; the FMA kernel keeps its one shape."""
    for bk, nj in ((2 * problem.bk, 2), (problem.bk, 2), (2 * problem.bk, 4)):
        if bk in problem.k_tile_options and tile_ok(problem, bm, bn, loader, bk) \
                and nj in _warp_widths(problem, bm, bn, loader, bk):
            return bk, nj
    return problem.bk, 4


def rule_tiles(problem: GemmProblem, sm_count: int) -> tuple[int, int, int]:
    """(BM, BN, splits) of the tile rule: big tiles when the problem fills the GPU with them, else
    64x64 (smaller only for a dimension under 64) and K split over enough blocks to give every SM
    about two (a lone block per SM leaves it waiting on memory most of the time)."""
    M, N, Z = problem.M, problem.N, problem.Z

    def tiles(a, b):
        return math.ceil(M / a) * math.ceil(N / b) * Z

    bm, bn = min(64, _fit(M)), min(64, _fit(N))
    big = [(128, 128), (128, 64) if M >= N else (64, 128), (64, 128) if M >= N else (128, 64)]
    for a, b in big:
        if a <= _fit(M) and b <= _fit(N) and tiles(a, b) >= sm_count and _size_ok(problem, a, b):
            bm, bn = a, b
            break
    splits, k_tiles, count = 1, problem.k_tiles, tiles(bm, bn)
    if problem.allow_split and count < sm_count * 3 // 2 and k_tiles >= 8:
        splits = max(1, min(16, round(2 * sm_count / count), k_tiles // 4))
    return bm, bn, problem.effective_splits(splits)


class CostModel:
    """The policy of last resort: the tile rule with the lowering's preferred loader where the
    templates allow it, else the candidate with the lowest estimate."""
    source = "cost-model"

    def __init__(self, gpu: GpuRates):
        self.gpu = gpu

    def best(self, problem: GemmProblem) -> GemmTactic:
        bm, bn, splits = rule_tiles(problem, self.gpu.sm_count)
        for loader, _ in problem.algorithms:
            if tile_ok(problem, bm, bn, loader):
                bk, nj = _latency_hiding(problem, bm, bn, loader)
                return make_tactic(problem, bm, bn, splits, loader, bk, nj)
        return self.ranked(problem)[0][0]

    def ranked(self, problem: GemmProblem) -> list[tuple[GemmTactic, float]]:
        """Every candidate with its estimate, lowest first."""
        options = candidates(problem)
        scored = [(t, estimate_us(problem, t, self.gpu)) for t in options]
        return sorted(scored, key=lambda pair: (pair[1], options.index(pair[0])))

    def choose(self, layer: dict, problem: GemmProblem) -> tuple[GemmTactic, str]:
        return self.best(problem), self.source


# -- policies ----------------------------------------------------------------------------------------
class TimingPolicy:
    """The fastest measured tactic that is still a candidate; ``sources`` names where each key's
    timings came from (default "timing-cache"); keys without timings go to ``fallback``."""

    def __init__(self, timings: Mapping[str, Mapping[str, float]], fallback,
                 sources: Mapping[str, str] | None = None):
        self.timings, self.fallback, self.sources = timings, fallback, dict(sources or {})

    def choose(self, layer: dict, problem: GemmProblem) -> tuple[GemmTactic, str]:
        measured = self.timings.get(problem.key) or {}
        valid = {t.name: t for t in candidates(problem)}
        timed = sorted((float(us), name) for name, us in measured.items() if name in valid)
        if not timed:
            return self.fallback.choose(layer, problem)
        return valid[timed[0][1]], self.sources.get(problem.key, "timing-cache")


class FixedPolicy:
    """One named tactic for every layer it is asked about (autotuning lowers each candidate so)."""

    def __init__(self, name: str):
        self.name = name

    def choose(self, layer: dict, problem: GemmProblem) -> tuple[GemmTactic, str]:
        for tactic in candidates(problem):
            if tactic.name == self.name:
                return tactic, "fixed"
        raise ValueError(f"layer {layer['name']!r}: {self.name!r} is no tactic of {problem.key}")


class Decision(NamedTuple):
    layer: int               # index in the plan's layers
    problem: GemmProblem
    tactic: GemmTactic
    source: str


class Recorder:
    """Wraps a policy and keeps each decision; set ``layer`` to the index being lowered."""

    def __init__(self, policy):
        self.policy = policy
        self.layer = -1
        self.decisions: list[Decision] = []

    def choose(self, layer: dict, problem: GemmProblem) -> tuple[GemmTactic, str]:
        tactic, source = self.policy.choose(layer, problem)
        self.decisions.append(Decision(self.layer, problem, tactic, source))
        return tactic, source


def select(ctx, layer: dict, problem: GemmProblem) -> GemmTactic:
    """The tactic for ``layer``: the context's policy decides, else the cost model for its arch."""
    policy = ctx.tactic_policy or CostModel(GpuRates.for_arch(ctx.arch, ctx.sm_count))
    return policy.choose(layer, problem)[0]

"""Device profiles: what edgert knows about a target (GPU, DLA, memory, CPU, toolkits), from data files.

Each Jetson / DRIVE profile is a TOML file in ``targets/profiles/`` with its sources cited and its
estimated numbers named in ``estimated``. ``host`` is not a file: it describes the machine edgert runs
on (CPU cores, memory, and the GPU that cupy or ``nvidia-smi`` reports, if any).

    profile = load_profile("jetson-agx-orin"); profile.dla.cores  # 2
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgert.errors import EdgeRTError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
HOST = "host"

# CUDA toolkit releases edgert knows about, oldest first (major.minor), for "which toolkits compile this arch".
KNOWN_TOOLKITS = ("10.0", "10.2", "11.0", "11.4", "11.8", "12.0", "12.2", "12.4", "12.6", "12.8", "12.9", "13.0")

# Dense tensor-core multiply-accumulates per SM per clock (int8, fp16), for GPUs that only report their
# SM count and clock (the host). Derived from NVIDIA's published peak rates (e.g. H100 SXM: 1979 dense
# INT8 TOPS / (2 * 132 SMs * 1.83 GHz) = 4096). Estimates for detection only.
_MACS_PER_SM_CLOCK = {
    "sm_70": (512, 512), "sm_72": (1024, 512), "sm_75": (1024, 512), "sm_80": (2048, 1024),
    "sm_86": (1024, 512), "sm_87": (2048, 1024), "sm_89": (1024, 512), "sm_90": (4096, 2048),
    "sm_100": (8192, 4096), "sm_110": (8192, 4096), "sm_120": (2048, 1024),
}
# The first toolkit that compiles each arch, and the last major version that still does (None: current).
_ARCH_TOOLKITS = {
    "sm_70": ("9.0", "12"), "sm_72": ("10.0", "12"), "sm_75": ("10.0", None), "sm_80": ("11.0", None),
    "sm_86": ("11.1", None), "sm_87": ("11.4", None), "sm_89": ("11.8", None), "sm_90": ("11.8", None),
    "sm_100": ("12.8", None), "sm_110": ("13.0", None), "sm_120": ("12.8", None),
}


class ProfileError(EdgeRTError):
    """A target profile is unknown or its data file is malformed."""


@dataclass(frozen=True)
class GPUSpec:
    arch: str                       # sm_87 ...
    architecture: str               # Ampere, Volta, Blackwell ...
    sm_count: int
    max_clock_mhz: float
    int8_dense_tops: float          # tensor cores, dense (no structured sparsity)
    fp16_dense_tflops: float
    fp32_tflops: float = 0.0
    cuda_cores: int = 0
    tensor_cores: int = 0
    cuda_min: str = ""              # first CUDA toolkit that compiles for ``arch``
    cuda_max: str = ""              # last major version that does ("" = every current one)
    name: str = ""
    l2_kib: int = 0                 # last-level GPU cache (activations that fit stay on chip)

    @property
    def cuda_toolkits(self) -> list[str]:
        """The known CUDA toolkit versions that can compile for this arch."""
        return [v for v in KNOWN_TOOLKITS if self.can_compile_with(v)]

    def can_compile_with(self, cuda_version: str) -> bool:
        version = _version_tuple(cuda_version)
        if self.cuda_min and version < _version_tuple(self.cuda_min):
            return False
        return not self.cuda_max or version[0] <= _version_tuple(self.cuda_max)[0]


@dataclass(frozen=True)
class DLASpec:
    version: int                    # 1 = Xavier (NVDLA v1), 2 = Orin (DLA 2.0)
    cores: int
    max_clock_mhz: float
    int8_dense_tops_per_core: float
    fp16_dense_tflops_per_core: float
    sram_kib: int                   # on-chip SRAM per core (or shared, see sram_shared)
    sram_shared: bool = False       # Xavier: one SRAM shared by the DLA cores and other engines

    def rate_tops(self, precision: str) -> float:
        return self.int8_dense_tops_per_core if precision == "int8" else self.fp16_dense_tflops_per_core


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    gpu: GPUSpec | None
    dla: DLASpec | None
    memory_gb: float
    memory_bandwidth_gbs: float
    memory_type: str = ""
    cpu: str = ""
    cpu_cores: int = 0
    cpu_clock_mhz: float = 0.0
    sources: tuple[str, ...] = ()
    estimated: tuple[str, ...] = ()     # "field: why" for every number that is not from a datasheet
    timing: dict = field(default_factory=dict)  # overrides of the timing model's constants

    @property
    def has_gpu(self) -> bool:
        return self.gpu is not None

    @property
    def dla_cores(self) -> int:
        return self.dla.cores if self.dla is not None else 0

    @property
    def dla_version(self) -> int | None:
        return self.dla.version if self.dla is not None else None

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.gpu is not None:
            data["gpu"]["cuda_toolkits"] = self.gpu.cuda_toolkits
        data["sources"], data["estimated"] = list(self.sources), list(self.estimated)
        return data

    def summary(self) -> str:
        gpu = (f"{self.gpu.arch} {self.gpu.sm_count} SMs @ {self.gpu.max_clock_mhz:.0f} MHz, "
               f"{self.gpu.int8_dense_tops:g} INT8 TOPS" if self.gpu else "no GPU")
        dla = (f"DLA v{self.dla.version} x{self.dla.cores} ({self.dla.int8_dense_tops_per_core:g} INT8 TOPS/core)"
               if self.dla else "no DLA")
        return f"{gpu}; {dla}; {self.memory_gb:g} GB @ {self.memory_bandwidth_gbs:g} GB/s"


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(version).split(".") if part.isdigit())


def list_profiles() -> list[str]:
    """Names of every profile: the data files, then ``host``."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml")) + [HOST]


@functools.lru_cache(maxsize=None)
def load_profile(name: str) -> TargetProfile:
    """The profile called ``name`` (a data file's stem, or ``host``); ProfileError naming the choices if unknown."""
    if name == HOST:
        return detect_host()
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(f"unknown target {name!r}; known targets: {', '.join(list_profiles())} "
                           "(see `edgert targets`)")
    try:
        with open(path, "rb") as f:
            return profile_from_dict(tomllib.load(f))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise ProfileError(f"target profile {path.name} is malformed: {type(e).__name__}: {e}") from e


def profile_from_dict(data: dict) -> TargetProfile:
    gpu = GPUSpec(**data["gpu"]) if "gpu" in data else None
    dla = DLASpec(**data["dla"]) if "dla" in data else None
    memory, cpu = data["memory"], data.get("cpu", {})
    return TargetProfile(
        name=data["name"], description=data.get("description", ""), gpu=gpu, dla=dla,
        memory_gb=float(memory["size_gb"]), memory_bandwidth_gbs=float(memory["bandwidth_gbs"]),
        memory_type=memory.get("type", ""), cpu=cpu.get("name", ""), cpu_cores=int(cpu.get("cores", 0)),
        cpu_clock_mhz=float(cpu.get("max_clock_mhz", 0)), sources=tuple(data.get("sources", ())),
        estimated=tuple(data.get("estimated", ())), timing=dict(data.get("timing", {})))


# -- host detection ----------------------------------------------------------------------------
def detect_host() -> TargetProfile:
    """The machine edgert runs on: CPU and memory from the OS, the GPU from cupy or nvidia-smi (none if neither)."""
    gpu = _gpu_from_cupy() or _gpu_from_nvidia_smi()
    cores = os.cpu_count() or 1
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gb = 0.0
    bandwidth = gpu.pop("memory_bandwidth_gbs", 0.0) if gpu else 0.0
    estimated = ["gpu.int8_dense_tops, gpu.fp16_dense_tflops: SM count x clock x tensor-core rate per arch "
                 "(edgert's table)"] if gpu else []
    return TargetProfile(
        name=HOST, description="the machine edgert runs on (detected; memory is system RAM, bandwidth the GPU's)",
        gpu=GPUSpec(**gpu) if gpu else None, dla=None, memory_gb=round(memory_gb, 1),
        memory_bandwidth_gbs=round(bandwidth, 1), cpu=_cpu_name(), cpu_cores=cores,
        sources=("detected from the operating system, cupy and nvidia-smi",), estimated=tuple(estimated))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_spec(name: str, arch: str, sm_count: int, clock_mhz: float, bandwidth_gbs: float = 0.0,
              l2_kib: int = 0) -> dict:
    int8_macs, fp16_macs = _MACS_PER_SM_CLOCK.get(arch, (0, 0))
    cuda_min, cuda_max = _ARCH_TOOLKITS.get(arch, ("", None))
    return {"name": name, "arch": arch, "architecture": "", "sm_count": sm_count, "max_clock_mhz": clock_mhz,
            "int8_dense_tops": round(2 * int8_macs * sm_count * clock_mhz * 1e6 / 1e12, 1),
            "fp16_dense_tflops": round(2 * fp16_macs * sm_count * clock_mhz * 1e6 / 1e12, 1),
            "cuda_min": cuda_min, "cuda_max": cuda_max or "", "l2_kib": l2_kib, "memory_bandwidth_gbs": bandwidth_gbs}


def _gpu_from_cupy() -> dict | None:
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception:  # no cupy, no driver, no device: not a GPU host
        return None
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    bandwidth = 2 * props.get("memoryClockRate", 0) * 1e3 * props.get("memoryBusWidth", 0) / 8 / 1e9
    return _gpu_spec(name, f"sm_{props['major']}{props['minor']}", int(props["multiProcessorCount"]),
                     props["clockRate"] / 1e3, bandwidth, int(props.get("l2CacheSize", 0)) // 1024)


def _gpu_from_nvidia_smi() -> dict | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,clocks.max.sm",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        name, cap, clock = [part.strip() for part in out.stdout.splitlines()[0].split(",")]
        major, minor = cap.split(".")
        arch = f"sm_{major}{minor}"
        return _gpu_spec(name, arch, _sm_count_from_name(name), float(clock))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _sm_count_from_name(name: str) -> int:
    """nvidia-smi does not report SMs: a few common parts by name, else 0 (rates unknown)."""
    known = {"H100 80GB HBM3": 132, "H100 PCIe": 114, "H200": 132, "A100": 108, "L4": 58, "A10": 72, "T4": 40}
    return next((count for key, count in known.items() if key in name), 0)

"""Compile CUDA C to cubin (and optionally PTX) for a target arch, with no GPU needed.

Two compilers, tried in order: NVRTC through ``cuda-bindings`` (``pip install cuda-bindings
nvidia-cuda-nvrtc``), then ``nvcc`` on PATH. Results are cached by content: the key is the SHA-256
of (source, arch, options, whether PTX was asked for), not of the compiler, because a cubin for an
arch is valid whoever built it (measured: NVRTC 13.5 cubins run under an R580 driver). PTX is
different: it only JIT-compiles on drivers that know its ISA version, so it is returned with that
version (``.version 9.5`` → ``"9.5"``) for the loader to check.

Sources must be self-contained (no ``#include`` of toolkit headers): NVRTC from PyPI ships no
``cuda_fp16.h``, so edgert's kernels define their own half type.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from edgert.errors import EdgeRTError

DEFAULT_OPTIONS = ("-std=c++17",)
_ARCH = re.compile(r"^(?:sm_|compute_)?(\d{2,3})([af]?)$")
# Arches each CUDA major release can still build, for the error message when no compiler says so itself.
_KNOWN_LIMITS = {13: 75, 12: 50, 11: 35}


@dataclasses.dataclass(frozen=True)
class Compiled:
    arch: str               # "sm_90"
    cubin: bytes
    ptx: str | None         # PTX text when asked for
    ptx_isa: str | None     # its ".version" (the driver must support it to JIT)
    compiler: str           # "nvrtc 13.5" / "nvcc 13.0"
    key: str                # content hash (cache key)
    log: str = ""


def normalize_arch(arch) -> str:
    """``90``, ``"90"``, ``"sm_90"``, ``"compute_90"`` → ``"sm_90"`` (``sm_90a`` keeps its suffix)."""
    match = _ARCH.match(str(arch).strip().lower())
    if not match:
        raise EdgeRTError(f"unknown CUDA arch {arch!r}: expected sm_XY such as sm_87 (Orin), sm_90 (Hopper), "
                          "sm_110 (Thor)")
    return f"sm_{match.group(1)}{match.group(2)}"


def arch_number(arch) -> int:
    return int(_ARCH.match(normalize_arch(arch)).group(1))


# -- compilers -----------------------------------------------------------------------------------
def _nvrtc_module():
    try:
        from cuda.bindings import nvrtc
        return nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # cuda-python < 12.6 layout
            return nvrtc
        except ImportError:
            return None


def _out_buffer(size: int) -> bytes:
    """A fresh bytes object for NVRTC to write into.

    NVRTC writes through the pointer it is given. CPython shares its 0- and 1-byte bytes objects
    (``b" " * 1`` is the interned ``b" "``), so a 1-byte log (just the terminating NUL) written into
    one corrupted every ``b" "`` in the process (msgpack length bytes included). Two spare bytes
    keep the buffer private.
    """
    return b"\x00" * (size + 2)


def _nvrtc_check(nvrtc, result, what: str):
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        _, text = nvrtc.nvrtcGetErrorString(err)
        raise EdgeRTError(f"NVRTC {what} failed: {text.decode() if isinstance(text, bytes) else text}")
    return result[1:] if isinstance(result, tuple) and len(result) > 1 else None


class _Nvrtc:
    def __init__(self, nvrtc):
        self.nvrtc = nvrtc
        major, minor = _nvrtc_check(nvrtc, nvrtc.nvrtcVersion(), "version query")
        self.name = f"nvrtc {major}.{minor}"
        self.major = major

    def archs(self) -> list[int]:
        (archs,) = _nvrtc_check(self.nvrtc, self.nvrtc.nvrtcGetSupportedArchs(), "arch query")
        return sorted(int(a) for a in archs)

    def compile(self, source: str, target: str, options: Sequence[str], name: str, want_ptx: bool):
        """(cubin or None, ptx or None, log) for target ``sm_XY`` (cubin) or ``compute_XY`` (ptx)."""
        nvrtc = self.nvrtc
        (program,) = _nvrtc_check(nvrtc, nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []),
                                  "program creation")
        try:
            opts = [f"--gpu-architecture={target}".encode()] + [o.encode() for o in options]
            result = nvrtc.nvrtcCompileProgram(program, len(opts), opts)
            (size,) = _nvrtc_check(nvrtc, nvrtc.nvrtcGetProgramLogSize(program), "log query")
            log = _out_buffer(size)
            nvrtc.nvrtcGetProgramLog(program, log)
            log = log.decode(errors="replace").rstrip("\x00 \n")
            if int(result[0]) != 0:
                raise EdgeRTError(f"CUDA compilation of {name} for {target} failed:\n{_trim_log(log)}")
            if want_ptx:
                (size,) = _nvrtc_check(nvrtc, nvrtc.nvrtcGetPTXSize(program), "PTX size")
                ptx = _out_buffer(size)
                _nvrtc_check(nvrtc, nvrtc.nvrtcGetPTX(program, ptx), "PTX")
                return None, ptx.rstrip(b"\x00").decode(), log
            (size,) = _nvrtc_check(nvrtc, nvrtc.nvrtcGetCUBINSize(program), "cubin size")
            cubin = _out_buffer(size)
            _nvrtc_check(nvrtc, nvrtc.nvrtcGetCUBIN(program, cubin), "cubin")
            return bytes(cubin[:size]), None, log
        finally:
            nvrtc.nvrtcDestroyProgram(program)


class _Nvcc:
    def __init__(self, path: str):
        self.path = path
        text = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"release (\d+)\.(\d+)", text)
        self.major = int(match.group(1)) if match else 0
        self.name = f"nvcc {match.group(1)}.{match.group(2)}" if match else "nvcc"

    def archs(self) -> list[int]:
        text = subprocess.run([self.path, "--list-gpu-code"], capture_output=True, text=True, check=False).stdout
        return sorted({int(m) for m in re.findall(r"sm_(\d+)", text)})

    def compile(self, source: str, target: str, options: Sequence[str], name: str, want_ptx: bool):
        with tempfile.TemporaryDirectory(prefix="edgert-nvcc-") as tmp:
            src = Path(tmp) / name
            src.write_text(source)
            out = Path(tmp) / ("out.ptx" if want_ptx else "out.cubin")
            mode = "-ptx" if want_ptx else "-cubin"
            command = [self.path, mode, f"-arch={target}", *options, "-o", str(out), str(src)]
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            log = (run.stdout + run.stderr).strip()
            if run.returncode != 0:
                raise EdgeRTError(f"CUDA compilation of {name} for {target} failed:\n{_trim_log(log)}")
            data = out.read_bytes()
        return (None, data.decode(), log) if want_ptx else (data, None, log)


def _trim_log(log: str, lines: int = 40) -> str:
    parts = log.splitlines()
    return "\n".join(parts[:lines] + ([f"... ({len(parts) - lines} more lines)"] if len(parts) > lines else []))


_COMPILERS: dict[str, object] = {}


def compiler(prefer: str | None = None):
    """The compiler to use: NVRTC if importable, else nvcc on PATH (``prefer`` = "nvrtc" | "nvcc")."""
    order = [prefer] if prefer else ["nvrtc", "nvcc"]
    for name in order:
        if name in _COMPILERS:
            return _COMPILERS[name]
        if name == "nvrtc":
            module = _nvrtc_module()
            if module is not None:
                try:
                    _COMPILERS[name] = _Nvrtc(module)
                except Exception:  # a broken install (no libnvrtc.so) means "no NVRTC"
                    continue
                return _COMPILERS[name]
        elif name == "nvcc" and shutil.which("nvcc"):
            _COMPILERS[name] = _Nvcc(shutil.which("nvcc"))
            return _COMPILERS[name]
    raise EdgeRTError("no CUDA compiler found: install NVRTC (pip install cuda-bindings nvidia-cuda-nvrtc) "
                      "or put the CUDA toolkit's nvcc on PATH")


def available() -> bool:
    try:
        compiler()
        return True
    except EdgeRTError:
        return False


def check_arch(arch, prefer: str | None = None) -> str:
    """Normalize ``arch`` and make sure the compiler can build for it (clear error if not)."""
    arch = normalize_arch(arch)
    tool = compiler(prefer)
    number = arch_number(arch)
    archs = tool.archs()
    if archs and number not in archs:
        hint = ""
        if number < min(archs):
            hint = (f"; CUDA {tool.major} dropped sm_{number} (e.g. sm_72 = Xavier needs a CUDA 12 toolkit "
                    "and its NVRTC)")
        raise EdgeRTError(f"{tool.name} cannot compile for {arch} (it supports "
                          f"{', '.join(f'sm_{a}' for a in archs)}){hint}")
    return arch


# -- cache ---------------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    """EDGERT_CUDA_CACHE (a folder, or "0" to disable), else ~/.cache/edgert/cuda."""
    value = os.environ.get("EDGERT_CUDA_CACHE")
    if value == "0":
        return None
    return Path(value) if value else Path.home() / ".cache" / "edgert" / "cuda"


def cache_key(source: str, arch: str, options: Sequence[str], want_ptx: bool) -> str:
    text = json.dumps({"source": source, "arch": arch, "options": list(options), "ptx": want_ptx}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _cache_read(key: str) -> Compiled | None:
    folder = cache_dir()
    if folder is None:
        return None
    meta_path = folder / f"{key}.json"
    try:
        meta = json.loads(meta_path.read_text())
        cubin = (folder / f"{key}.cubin").read_bytes()
        ptx = (folder / f"{key}.ptx").read_text() if meta.get("ptx") else None
    except (OSError, ValueError):
        return None
    return Compiled(meta["arch"], cubin, ptx, meta.get("ptx_isa"), meta["compiler"], key)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _cache_write(result: Compiled) -> None:
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / f"{result.key}.cubin", result.cubin)
        if result.ptx is not None:
            _atomic_write(folder / f"{result.key}.ptx", result.ptx.encode())
        meta = {"arch": result.arch, "compiler": result.compiler, "ptx": result.ptx is not None,
                "ptx_isa": result.ptx_isa}
        _atomic_write(folder / f"{result.key}.json", json.dumps(meta).encode())  # last: marks the entry complete
    except OSError:
        pass  # a read-only home is no reason to fail a build


def ptx_isa_version(ptx: str) -> str | None:
    match = re.search(r"^\s*\.version\s+(\d+\.\d+)", ptx, re.MULTILINE)
    return match.group(1) if match else None


def compile_source(source: str, arch, *, options: Sequence[str] = DEFAULT_OPTIONS, ptx: bool = False,
                   name: str = "edgert_kernels.cu", prefer: str | None = None, use_cache: bool = True) -> Compiled:
    """Compile ``source`` to a cubin for ``arch`` (and PTX for ``compute_XY`` when ``ptx``)."""
    arch = normalize_arch(arch)
    options = tuple(options)
    key = cache_key(source, arch, options, ptx)
    if use_cache:
        hit = _cache_read(key)
        if hit is not None:
            return hit
    arch = check_arch(arch, prefer)
    tool = compiler(prefer)
    cubin, _, log = tool.compile(source, arch, options, name, False)
    ptx_text = None
    if ptx:
        _, ptx_text, _ = tool.compile(source, arch.replace("sm_", "compute_"), options, name, True)
    result = Compiled(arch, cubin, ptx_text, ptx_isa_version(ptx_text) if ptx_text else None, tool.name, key, log)
    if use_cache:
        _cache_write(result)
    return result

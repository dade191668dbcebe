"""The native per-element and convolution kernels as plain C, built by this machine's compiler and, for aarch64
(Jetson's Cortex-A78AE: the NEON build), by Debian's cross compiler and run under qemu-user.

tests/native/pointwise_check.c checks every opcode against double-precision libm and the GELU chain (on the host once
per x86 build, by EDGERT_CPU_ISA);
tests/native/conv_check.c the direct, pointwise and depthwise convolution microkernels against a double-precision loop (on
the host once per x86 build: AVX-512, AVX2+FMA and baseline, by EDGERT_CPU_ISA);
tests/native/parallel_check.c the native kernels' parallel loop (native_parallel.c: every part once, nested jobs inline,
several callers at once). The
aarch64 half needs ``aarch64-linux-gnu-gcc`` and ``qemu-aarch64`` (``apt-get install gcc-aarch64-linux-gnu
qemu-user``; .ci/run installs them where it can) and is skipped without them.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "kernels", "cpu")
SOURCES = [os.path.join(ROOT, "tests", "native", "pointwise_check.c"),
           os.path.join(KERNELS, "pointwise_ukernels.c"), os.path.join(KERNELS, "pointwise_ukernels_avx2.c")]
CONV_SOURCES = [os.path.join(ROOT, "tests", "native", "conv_check.c"),
                os.path.join(KERNELS, "conv_ukernels.c"), os.path.join(KERNELS, "conv_ukernels_avx2.c")]
PARALLEL_SOURCES = [os.path.join(ROOT, "tests", "native", "parallel_check.c"), os.path.join(KERNELS, "native_parallel.c")]
FLAGS = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-Wall", "-Wextra", "-Werror", f"-I{KERNELS}"]


def build(compiler, binary, extra=(), sources=SOURCES):
    built = subprocess.run([compiler, *FLAGS, *extra, *sources, "-lm", "-lpthread", "-o", str(binary)], capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr


def run(runner, binary, isa=None):
    env = dict(os.environ, EDGERT_CPU_ISA=isa) if isa else None
    ran = subprocess.run([*runner, str(binary)], capture_output=True, text=True, timeout=300, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout.strip()


def build_and_run(compiler, runner, binary, extra=(), sources=SOURCES):
    build(compiler, binary, extra, sources)
    return run(runner, binary)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_host_build(tmp_path):
    binary = tmp_path / "check"
    build("cc", binary)
    seen = {run([], binary, isa) for isa in (None, "avx2", "baseline")}   # every x86 build on this machine
    assert all(line.endswith(" ok") for line in seen)
    if platform.machine() == "x86_64":
        assert "baseline ok" in seen


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_host_convolution_builds(tmp_path):
    binary = tmp_path / "conv-check"
    build("cc", binary, sources=CONV_SOURCES)
    seen = {run([], binary, isa) for isa in (None, "avx2", "baseline")}
    assert all(line.endswith(" ok") for line in seen)
    if platform.machine() == "x86_64":
        assert "baseline ok" in seen


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                    reason="no aarch64 cross compiler or qemu-user (apt-get install gcc-aarch64-linux-gnu qemu-user)")
def test_aarch64_neon_build_under_qemu(tmp_path):
    binary = tmp_path / "check-aarch64"
    assert build_and_run("aarch64-linux-gnu-gcc", ["qemu-aarch64"], binary, ["-static"]) == "neon ok"
    disassembly = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--disassemble=pointwise_run_baseline", str(binary)],
                                 capture_output=True, text=True).stdout
    assert disassembly.count(".4s") > 100   # the activation loops work on NEON's 4-float vectors


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                    reason="no aarch64 cross compiler or qemu-user (apt-get install gcc-aarch64-linux-gnu qemu-user)")
def test_aarch64_convolution_build_under_qemu(tmp_path):
    binary = tmp_path / "conv-check-aarch64"
    assert build_and_run("aarch64-linux-gnu-gcc", ["qemu-aarch64"], binary, ["-static"], CONV_SOURCES) == "neon ok"
    fmla = 0
    for function in ("conv_direct_rows_baseline", "direct_group_baseline"):   # whether or not GCC inlines the latter
        fmla += subprocess.run(["aarch64-linux-gnu-objdump", "-d", f"--disassemble={function}", str(binary)],
                               capture_output=True, text=True).stdout.count("fmla")
    assert fmla >= 8   # the accumulators are NEON vectors


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_host_parallel_loop(tmp_path):
    assert build_and_run("cc", [], tmp_path / "parallel-check", sources=PARALLEL_SOURCES) == "parallel ok"


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                    reason="no aarch64 cross compiler or qemu-user (apt-get install gcc-aarch64-linux-gnu qemu-user)")
def test_aarch64_parallel_loop_under_qemu(tmp_path):
    assert build_and_run("aarch64-linux-gnu-gcc", ["qemu-aarch64"], tmp_path / "parallel-check-aarch64", ["-static"],
                         PARALLEL_SOURCES) == "parallel ok"

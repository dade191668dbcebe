"""The native per-element kernels as plain C, built by this machine's compiler and, for aarch64 (Jetson's
Cortex-A78AE: the NEON build), by Debian's cross compiler and run under qemu-user.

tests/native/pointwise_check.c checks every opcode against double-precision libm and the GELU chain. The
aarch64 half needs ``aarch64-linux-gnu-gcc`` and ``qemu-aarch64`` (``apt-get install gcc-aarch64-linux-gnu
qemu-user``; .ci/run installs them where it can) and is skipped without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "kernels", "cpu")
SOURCES = [os.path.join(ROOT, "tests", "native", "pointwise_check.c"),
           os.path.join(KERNELS, "pointwise_ukernels.c"), os.path.join(KERNELS, "pointwise_ukernels_avx2.c")]
FLAGS = ["-O3", "-fno-trapping-math", "-fno-math-errno", "-Wall", "-Wextra", "-Werror", f"-I{KERNELS}"]


def build_and_run(compiler, runner, binary, extra=()):
    built = subprocess.run([compiler, *FLAGS, *extra, *SOURCES, "-lm", "-o", str(binary)], capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([*runner, str(binary)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout.strip()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_host_build(tmp_path):
    assert build_and_run("cc", [], tmp_path / "check").endswith(" ok")


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                    reason="no aarch64 cross compiler or qemu-user (apt-get install gcc-aarch64-linux-gnu qemu-user)")
def test_aarch64_neon_build_under_qemu(tmp_path):
    binary = tmp_path / "check-aarch64"
    assert build_and_run("aarch64-linux-gnu-gcc", ["qemu-aarch64"], binary, ["-static"]) == "neon ok"
    disassembly = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--disassemble=pointwise_run_baseline", str(binary)],
                                 capture_output=True, text=True).stdout
    assert disassembly.count(".4s") > 100   # the activation loops work on NEON's 4-float vectors

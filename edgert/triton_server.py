"""Start a real Triton Inference Server on this machine, for tests, benchmarks and trying a repository out.

The server comes from the ``nvidia-pytriton`` wheel, which bundles ``tritonserver`` and its Python backend
(``pip install 'edgert[serving]'``). ``LocalTritonServer(repository)`` copies the server into a temporary
folder with the Python-backend stub of this interpreter, starts it on free loopback ports with this
interpreter's ``bin/`` first on PATH (so the models import this edgert), waits until it is ready and stops it
on ``close()`` or at the end of a ``with`` block. Production deployments run NVIDIA's Triton container
instead (docs/serving.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from edgert.errors import EdgeRTError


class ServerError(EdgeRTError):
    """The local Triton server cannot be found, started or reached."""


def bundled_server() -> tuple[Path, Path]:
    """(the wheel's tritonserver folder, its shared libraries) or ServerError saying what to install."""
    spec = importlib.util.find_spec("pytriton")   # located, not imported: only its bundled server is used
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("no Triton server here: pip install --no-deps nvidia-pytriton (it bundles tritonserver; "
                          "see docs/serving.md) or run NVIDIA's Triton container") from None
    package = Path(next(iter(spec.submodule_search_locations)))
    server, libs = package / "tritonserver", package.parent / "nvidia_pytriton.libs"
    if not (server / "bin" / "tritonserver").is_file():
        raise ServerError(f"nvidia-pytriton at {package} has no tritonserver binary (a CPU-only or broken install)")
    return server, libs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalTritonServer:
    """A tritonserver process serving ``repository`` on 127.0.0.1 (HTTP, gRPC and metrics on free ports)."""

    def __init__(self, repository: str | os.PathLike, *, startup_timeout: float = 60.0, log_verbose: int = 0):
        source, libs = bundled_server()
        self.workdir = Path(tempfile.mkdtemp(prefix="edgert-triton-"))
        self.log_path = self.workdir / "server.log"
        self.http_port, self.grpc_port, self.metrics_port = _free_port(), _free_port(), _free_port()
        self._process = None
        self._final_log = ""
        try:
            server = self._install(source)
            env = dict(os.environ)
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), sysconfig.get_config_var("LIBDIR"),
                                                                  env.get("LD_LIBRARY_PATH")]))
            env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
            command = [str(server / "bin" / "tritonserver"), f"--model-repository={Path(repository).resolve()}",
                       f"--backend-directory={server / 'backends'}", f"--cache-directory={server / 'caches'}",
                       "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
                       f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
                       f"--metrics-port={self.metrics_port}", "--allow-gpu-metrics=false",
                       "--pinned-memory-pool-byte-size=0", f"--log-verbose={log_verbose}",
                       f"--backend-config=python,shm-region-prefix-name=edgert{os.getpid()}x{self.http_port}"]
            with open(self.log_path, "wb") as log:
                self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                 start_new_session=True)
            self._wait_ready(startup_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        if self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return getattr(self, "_final_log", "")

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _install(self, source: Path) -> Path:
        server = self.workdir / "tritonserver"
        shutil.copytree(source, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
        shutil.copy(stub, server / "backends" / "python" / "triton_python_backend_stub")
        return server

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ServerError(f"tritonserver exited with status {self._process.returncode}: "
                                  f"{self._last_error_line()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ServerError(f"tritonserver not ready after {timeout:.0f} s: {self._last_error_line()}")

    def _last_error_line(self) -> str:
        lines = [line for line in self.log().splitlines() if line.startswith(("E", "error"))]
        return lines[-1] if lines else f"see {self.log_path}"

    def close(self, timeout: float = 30.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); its exit status, None if never started."""
        status = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self._process.pid, signal.SIGKILL)
                    self._process.wait()
            status = self._process.returncode
        self._final_log = self.log()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return status

    def __enter__(self) -> "LocalTritonServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

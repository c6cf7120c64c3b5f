"""``cllm serve`` as real separate processes on loopback ports, for tests of several replicas.

Each replica is started in a session of its own, so that stopping it also stops any worker
processes it spawned; `kill` is SIGKILL, the way a machine or a process dies without warning.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["Replica", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Replica:
    """One ``cllm serve`` process (``args`` are its options after ``serve``)."""

    def __init__(self, name: str, args: list[str], home: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"{name}.log"
        env = {**os.environ, "CLLM_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        code = "import sys; from cllm.cli import main; sys.exit(main())"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    code,
                    "serve",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    *args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90.0) -> Replica:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 503):
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, no goodbye: its streams' leases are left to expire."""
        self._signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(10)
        # Workers of a supervisor killed first would otherwise outlive it.
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

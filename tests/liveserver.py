"""A real ``tollbook serve`` in a subprocess, for the HTTP tests (tests/test_http*.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import _env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(db: str, *args: str, input: bytes | None = None) -> tuple[int, bytes, bytes]:
    """The real command line on ``db``: exit code, stdout and stderr as bytes."""
    done = subprocess.run([sys.executable, "-m", "tollbook", *args], input=input, capture_output=True,
                          env=_env(db, None), timeout=120)
    return done.returncode, done.stdout, done.stderr


class LiveServer:
    """``tollbook serve`` on a free port; its stdout and stderr go to ``log_path``."""

    def __init__(self, db: str, log_path: Path, *extra: str):
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "tollbook", "serve", "--port", str(self.port), *extra],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=_env(db, None))
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=5)
                break
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tollbook serve did not start: {self.log()}") from None
                time.sleep(0.1)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        """Stops the server (SIGTERM) and returns everything it logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.log_path.read_text(errors="replace")


def artifacts() -> Path:
    """Where the browser tests leave their screenshots (TOLLBOOK_ARTIFACTS, else tests/artifacts)."""
    folder = Path(os.environ.get("TOLLBOOK_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder

"""Run a command whose file writes fail as on a full disk: ``RLIMIT_FSIZE`` in the child process.

A write past the limit fails with ``EFBIG`` ("File too large"), the same kind of failure a
full disk (``ENOSPC``) or an exhausted quota (``EDQUOT``) gives, without filling a disk.
Reading is not limited, so files larger than the limit that exist already are read as usual.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

from tests.helpers.training import REPO


def file_size_limit(n_bytes: int):
    """A ``preexec_fn``: files of this process cannot grow past ``n_bytes``; a write beyond fails with EFBIG."""

    def limit() -> None:
        # Without this the kernel kills the process with SIGXFSZ instead of failing the write.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))

    return limit


def run_with_file_size_limit(args: list[str], n_bytes: int, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python *args`` in the repository root under :func:`file_size_limit`, output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=file_size_limit(n_bytes), check=False)

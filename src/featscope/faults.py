"""Crash-test hook: ``FEATSCOPE_FAULT_AT=<stage>`` kills the process at that stage, as SIGKILL
would, so tests can prove that a build killed anywhere resumes to the same result."""

from __future__ import annotations

import os
import signal


def fault_point(stage: str) -> None:
    if os.environ.get("FEATSCOPE_FAULT_AT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)

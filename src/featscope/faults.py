"""Crash-test hook: ``FEATSCOPE_FAULT_AT=<stage>`` kills the process at that stage, as SIGKILL
would, so tests can prove that a build killed anywhere resumes to the same result.
``FEATSCOPE_FAULT_SIGNAL=INT`` sends SIGINT instead: a Ctrl-C at a known point."""

from __future__ import annotations

import os
import signal


def fault_point(stage: str) -> None:
    if os.environ.get("FEATSCOPE_FAULT_AT") == stage:
        interrupt = os.environ.get("FEATSCOPE_FAULT_SIGNAL") == "INT"
        os.kill(os.getpid(), signal.SIGINT if interrupt else signal.SIGKILL)

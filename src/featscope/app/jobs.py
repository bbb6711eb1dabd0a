"""Background jobs for slow CAM methods: one thread each, progress, cancel, a registry.

A job is a function ``fn(progress, cancel) -> result``: it reports ``progress(done, total)``
and returns early (by raising) once ``cancel`` is set. The registry runs at most one job per
key (asking again returns the running or finished job) and, within a *group* (one image),
only the latest: starting a job for another class or method of the same image cancels the
older one, so stale work never piles up. Polled by the app with a ``dcc.Interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


@dataclass(eq=False)
class Job:
    key: Hashable
    group: Hashable
    cancel_event: threading.Event = field(default_factory=threading.Event)
    state: str = RUNNING
    done: int = 0
    total: int = 0
    error: str | None = None
    result: Any = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def active(self) -> bool:
        return self.state == RUNNING

    @property
    def fraction(self) -> float:
        if self.state == DONE:
            return 1.0
        return self.done / self.total if self.total > 0 else 0.0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (tests, scripts); True if it did in time."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.active


class JobRegistry:
    """Thread-safe registry of background jobs, bounded in how many finished ones it keeps."""

    def __init__(self, keep_finished: int = 64):
        self.keep_finished = keep_finished
        self._jobs: OrderedDict[Hashable, Job] = OrderedDict()
        self._lock = threading.Lock()

    def start(
        self,
        key: Hashable,
        fn: Callable[[Callable[[int, int], None], threading.Event], Any],
        *,
        group: Hashable | None = None,
    ) -> Job:
        """Start ``fn`` in a thread under ``key``, unless that job is running or done."""
        with self._lock:
            old = self._jobs.get(key)
            if old is not None and old.state in (RUNNING, DONE):
                return old
            for other in self._jobs.values():
                if other.active and other.group == group and group is not None:
                    other.cancel()  # latest wins within the group
            job = Job(key=key, group=group)
            job.thread = threading.Thread(
                target=self._run, args=(job, fn), name=f"featscope-job-{key}", daemon=True
            )
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            self._prune()
        job.thread.start()
        return job

    def get(self, key: Hashable) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def cancel(self, key: Hashable) -> bool:
        job = self.get(key)
        if job is None or not job.active:
            return False
        job.cancel()
        return True

    def active(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.active]

    def cancel_all(self) -> None:
        for job in self.active():
            job.cancel()

    def _run(self, job: Job, fn: Callable[..., Any]) -> None:
        try:
            result = fn(job.progress, job.cancel_event)
        except Exception as exc:  # noqa: BLE001 - reported to the user through the job
            if job.cancel_event.is_set():
                job.state = CANCELLED
            else:
                log.exception("background job %s failed", job.key)
                job.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                job.state = FAILED
        else:
            job.result = result
            job.state = CANCELLED if job.cancel_event.is_set() and result is None else DONE
        finally:
            job.finished = time.monotonic()

    def _prune(self) -> None:
        finished = [k for k, j in self._jobs.items() if not j.active]
        for k in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[k]

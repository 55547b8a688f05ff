"""Where sandboxed runs happen: a local pool or a Dask distributed cluster.

Both take self-contained jobs (:class:`~coursekit.grading.sandbox.Job`: the
notebook's cells, its files, the hidden calls and the plan of the sandbox's
``coursekit``, all plain data) and give back :class:`RawRun` results; neither
touches the course directory or the gradebook, which only the driver writes.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Iterable, Iterator

from coursekit.grading.limits import Limits
from coursekit.grading.reruns import run_submission
from coursekit.grading.sandbox import Job, RawRun

Keyed = tuple[str, Job]
#: called with each job's key and its run, or the exception that ended it (one job's failure is its own).
Done = Callable[[str, "RawRun | Exception"], None]


def _as_exception(error: BaseException) -> Exception:
    """``error`` if it is an ``Exception``; a ``BaseException`` that ended a job (``SystemExit``) wrapped in one."""
    return error if isinstance(error, Exception) else RuntimeError(f"the job ended with {type(error).__name__}")


def remote_run(job: Job, limits: dict[str, Any], use_sandbox: bool | None) -> dict[str, Any]:
    """Run one job where this function is called (a Dask worker) and return plain data.

    Args:
        job: the job.
        limits: :class:`Limits` fields.
        use_sandbox: passed to :func:`~coursekit.grading.sandbox.run_job`.

    Returns:
        :meth:`RawRun.to_dict` of the run (see :func:`~coursekit.grading.reruns.run_submission`).
    """
    return run_submission(job, Limits(**limits), use_sandbox=use_sandbox).to_dict()


class LocalExecutor:
    """Run jobs in ``jobs`` sandboxes at once on this machine.

    Example:
        >>> LocalExecutor(2).jobs
        2
    """

    def __init__(self, jobs: int) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive int, got {jobs!r}")
        self.jobs = jobs

    def run(self, jobs: Iterable[Keyed], limits: Limits, use_sandbox: bool | None, done: Done) -> None:
        """Run every job, calling ``done(key, result)`` in this thread as each finishes.

        ``result`` is the job's :class:`RawRun`, or the exception that ended it: one
        failing job never stops the others.
        """
        pending: dict[concurrent.futures.Future[RawRun], str] = {}
        source: Iterator[Keyed] = iter(jobs)
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
            exhausted = False
            while True:
                while not exhausted and len(pending) < self.jobs:
                    try:
                        key, job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[pool.submit(run_submission, job, limits, use_sandbox=use_sandbox)] = key
                if not pending:
                    return
                finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    key = pending.pop(future)
                    error = future.exception()
                    done(key, future.result() if error is None else _as_exception(error))


class DaskExecutor:
    """Run jobs on a Dask distributed cluster at ``address`` (``HOST:PORT``).

    Each job travels to a worker as data and its raw result comes back; no
    shared filesystem is needed. At most ``2 * total worker threads`` jobs are
    in flight, so a huge batch does not sit in the scheduler's memory.
    """

    def __init__(self, address: str) -> None:
        if not isinstance(address, str) or ":" not in address:
            raise ValueError(f"address must look like HOST:PORT, got {address!r}")
        self.address = address

    def run(self, jobs: Iterable[Keyed], limits: Limits, use_sandbox: bool | None, done: Done) -> None:
        """Run every job on the cluster, calling ``done(key, result)`` in this thread as each finishes."""
        from distributed import Client, as_completed

        with Client(f"tcp://{self.address}", timeout=30) as client:
            threads = sum(client.nthreads().values()) or 1
            window = 2 * threads
            source = iter(jobs)
            keys: dict[str, str] = {}
            queue = as_completed()

            def submit_next() -> bool:
                try:
                    key, job = next(source)
                except StopIteration:
                    return False
                future = client.submit(remote_run, job, limits.to_dict(), use_sandbox, pure=False)
                keys[future.key] = key
                queue.add(future)
                return True

            for _ in range(window):
                if not submit_next():
                    break
            for future in queue:
                key = keys.pop(future.key)
                try:
                    raw: RawRun | Exception = RawRun.from_dict(future.result())
                except Exception as error:  # noqa: BLE001 - a job's failure, on the worker or in its data, is its own
                    raw = error
                done(key, raw)
                future.release()
                submit_next()


def make_executor(spec: str, jobs: int) -> LocalExecutor | DaskExecutor:
    """Build the executor named on the command line (``local`` or ``dask://HOST:PORT``).

    Example:
        >>> make_executor("dask://127.0.0.1:8786", 1).address
        '127.0.0.1:8786'
        >>> make_executor("ssh://x", 1)
        Traceback (most recent call last):
        ...
        ValueError: executor must be 'local' or 'dask://HOST:PORT', got 'ssh://x'
    """
    if spec == "local":
        return LocalExecutor(jobs)
    if spec.startswith("dask://") and len(spec) > len("dask://"):
        return DaskExecutor(spec[len("dask://"):])
    raise ValueError(f"executor must be 'local' or 'dask://HOST:PORT', got {spec!r}")

"""Functions the tests send to worker processes (importable there as ``support.probes``)."""

from __future__ import annotations

import os


def threads_and_square(job: int) -> tuple[int, str, int]:
    """The square of ``job``, this process's BLAS thread setting and its pid."""
    return job * job, os.environ.get("OPENBLAS_NUM_THREADS", ""), os.getpid()


def where(job: int) -> tuple[int, int, str, str, str]:
    """The square of ``job`` and where it ran: pid, SLURM job, malloc and thread settings."""
    env = os.environ
    return (
        job * job,
        os.getpid(),
        env.get("SLURM_JOB_ID", ""),
        env.get("MALLOC_TRIM_THRESHOLD_", ""),
        env.get("OPENBLAS_NUM_THREADS", ""),
    )


def allocate(gib: float) -> str:
    """Try to allocate ``gib`` GiB in this process: ``ok`` or the error's name."""
    import numpy as np

    try:
        block = np.ones(int(gib * 2**30), dtype=np.uint8)
    except MemoryError:
        return "MemoryError"
    return "ok" if block[-1] == 1 else "?"

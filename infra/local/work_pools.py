"""Create the process work pools ``local``, ``gpu`` and ``hpc`` if missing (one interpreter,
instead of one ``prefect work-pool`` command per pool: 4 s against 25 s)."""

from __future__ import annotations

import asyncio
import contextlib

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.workers.process import ProcessWorker

POOLS = ("local", "gpu", "hpc")


async def create_pools() -> None:
    """Each pool with the process worker's default job template, as the CLI makes it."""
    template = ProcessWorker.get_default_base_job_template()
    async with get_client() as client:
        for name in POOLS:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(
                    WorkPoolCreate(name=name, type="process", base_job_template=template)
                )


if __name__ == "__main__":
    asyncio.run(create_pools())

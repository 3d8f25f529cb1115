"""The Python API of the jobs: ``pull`` / ``apull`` and ``push`` / ``apush``, as ``s3ferry pull`` and
``s3ferry push`` run them -- the same config file (its ``[defaults]`` and named endpoints, see
:mod:`s3ferry.operations.copy`), the same settings as keyword arguments, a :class:`JobReport` back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from s3ferry.core.options import TransferOptions
from s3ferry.core.urls import Location
from s3ferry.engine.transfer import Executor
from s3ferry.jobs import JobReport
from s3ferry.jobs.pull import PullSettings
from s3ferry.jobs.pull import pull as run_pull
from s3ferry.jobs.push import PushSettings
from s3ferry.jobs.push import push as run_push
from s3ferry.observe.progress import ProgressListener
from s3ferry.operations.copy import ConfigArg, filters_of
from s3ferry.operations.settings import aprepare
from s3ferry.operations.tree import Filter


async def apull(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    archive: str | None = None,
    settle: float | str | None = None,
    retention_days: float | None = None,
    filters: Sequence[Filter] | None = None,
    transfers: int | None = None,
    progress: ProgressListener | None = None,
    executor: Executor | None = None,
    **overrides: Any,
) -> JobReport:
    """One run of ``s3ferry pull SRC DST``: every settled file below the folder ``src`` into S3, then into its
    ``archive`` folder. ``settle`` is seconds or an age ("60s"); ``include=``/``exclude=`` globs or ``filters``
    select files; other keyword arguments as :func:`s3ferry.acopy`'s. Never raises for one file's failure:
    see the report's ``failures`` and ``exit_code``."""
    settings = {"archive": archive, "settle": settle, "retention_days": retention_days, "transfers": transfers}
    call = await aprepare("pull", src, dst, options, {**overrides, **settings}, config)
    v = call.values
    return await run_pull(call.src, call.dst, call.options,
                          PullSettings(archive=v["archive"], settle=v["settle"], retention_days=v["retention_days"],
                                       filters=filters_of(call.values, filters), transfers=v["transfers"]),
                          progress=progress, executor=executor)


async def apush(
    src: str | Location,
    dst: str | Location,
    options: TransferOptions | None = None,
    *,
    config: ConfigArg = None,
    retry_failed: bool | None = None,
    filters: Sequence[Filter] | None = None,
    transfers: int | None = None,
    progress: ProgressListener | None = None,
    executor: Executor | None = None,
    **overrides: Any,
) -> JobReport:
    """One run of ``s3ferry push SRC DST``: every object below the S3 prefix ``src`` not yet delivered to the
    folder ``dst``; ``retry_failed=True`` works through the retry queue instead. Keyword arguments as
    :func:`apull`'s. Never raises for one object's failure."""
    settings = {"retry_failed": retry_failed, "transfers": transfers}
    call = await aprepare("push", src, dst, options, {**overrides, **settings}, config)
    return await run_push(call.src, call.dst, call.options,
                          PushSettings(retry_failed=bool(call.values["retry_failed"]),
                                       filters=filters_of(call.values, filters), transfers=call.values["transfers"]),
                          progress=progress, executor=executor)


def pull(src: str | Location, dst: str | Location, options: TransferOptions | None = None,
         **kwargs: Any) -> JobReport:
    """Blocking form of :func:`apull` (runs its own event loop)."""
    return asyncio.run(apull(src, dst, options, **kwargs))


def push(src: str | Location, dst: str | Location, options: TransferOptions | None = None,
         **kwargs: Any) -> JobReport:
    """Blocking form of :func:`apush` (runs its own event loop)."""
    return asyncio.run(apush(src, dst, options, **kwargs))

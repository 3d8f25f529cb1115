"""asyncio's per-write "socket.send() raised exception." after a cut connection is not printed (the cut
is reported once, as the command's one error line); other asyncio warnings are, and -vv shows all."""

from __future__ import annotations

import logging

import pytest

from s3ferry.observe import logs


@pytest.mark.parametrize(("verbose", "shown"), [(0, False), (1, False), (2, True)])
def test_transport_noise_only_with_vv(capsys: pytest.CaptureFixture[str], verbose: int, shown: bool) -> None:
    logs.setup(verbose=verbose)
    asyncio_log = logging.getLogger("asyncio")
    for _ in range(6):
        asyncio_log.warning("socket.send() raised exception.")
    asyncio_log.warning("Executing %s took 1.2 seconds", "<Task>")
    err = capsys.readouterr().err
    assert ("socket.send() raised exception." in err) is shown
    assert "Executing <Task> took 1.2 seconds" in err


def _orphan_a_tornado_timeout() -> None:
    """What Dask's client leaves behind when it closes: a tornado ``with_timeout`` future whose waiter is
    gone; its timeout fires later (``TimeoutError("Timeout")``) and asyncio reports it when collected."""
    import asyncio
    import gc
    from datetime import timedelta

    from tornado.gen import with_timeout

    async def main() -> None:
        with_timeout(timedelta(seconds=0.01), asyncio.get_running_loop().create_future())
        await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())


def _orphan_another_error() -> None:
    import asyncio
    import gc

    async def main() -> None:
        asyncio.get_running_loop().create_future().set_exception(TimeoutError("our own"))
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())


@pytest.mark.parametrize(("verbose", "shown"), [(0, False), (2, True)])
def test_an_orphaned_tornado_timeout_at_dask_shutdown_is_not_printed(capsys: pytest.CaptureFixture[str],
                                                                       verbose: int, shown: bool) -> None:
    logs.setup(verbose=verbose)
    _orphan_a_tornado_timeout()
    assert ("Future exception was never retrieved" in capsys.readouterr().err) is shown
    _orphan_another_error()  # any other orphaned exception is still reported: it may be a bug of ours
    assert "TimeoutError: our own" in capsys.readouterr().err

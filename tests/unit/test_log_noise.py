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

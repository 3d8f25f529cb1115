"""The unit tier starts no server: a test here that asks for a server fixture is refused at collection.

(Servers a test would start in its own body are not seen here; tests that do belong in tests/integration.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: the fixtures of tests/conftest.py that start OpenSSH sshd or SeaweedFS
SERVER_FIXTURES = frozenset({"ssh", "s3", "bucket", "s3_env", "trusted_home"})
UNIT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    offenders = [item.nodeid for item in items if isinstance(item, pytest.Function)
                 and item.path.is_relative_to(UNIT) and SERVER_FIXTURES & set(item.fixturenames)]
    if offenders:
        raise pytest.UsageError("unit tests may not use a server fixture (move them to tests/integration): "
                                + ", ".join(offenders))

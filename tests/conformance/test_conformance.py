"""The local and SFTP sources run the shared conformance suite (tests/support/conformance.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from s3ferry.backends.local import LocalSource
from s3ferry.backends.sftp import SftpSource
from s3ferry.core.options import SftpOptions
from s3ferry.core.storage import Source
from s3ferry.core.urls import parse
from support.conformance import SourceConformance, TreeConformance


class TestLocalSource(SourceConformance, TreeConformance):
    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path

    def make_source(self, path: Path) -> Source:
        return LocalSource(parse(str(path)))


class TestSftpSource(SourceConformance, TreeConformance):
    @pytest.fixture
    def root(self, ssh: Any, request: pytest.FixtureRequest) -> Path:
        folder = ssh.root / request.node.name.replace("[", "_").replace("]", "_")
        folder.mkdir()
        self.ssh = ssh
        return folder

    def make_source(self, path: Path) -> Source:
        options = SftpOptions(identity=(self.ssh.user_key,), known_hosts=self.ssh.known_hosts)
        # A small block makes every range span several requests of the window.
        return SftpSource(parse(self.ssh.url(path)), options, block=64 * 1024, window=4)

"""The package builds as a wheel that installs into a clean virtualenv and works there: the command,
the Python API, and nothing of the test bed inside it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(ROOT)], check=True, timeout=300)
    (built,) = out.glob("s3ferry-*.whl")
    return built


def test_wheel_holds_the_package_and_no_test_servers(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "s3ferry/py.typed" in names
    assert "s3ferry/cli/__init__.py" in names and "s3ferry/core/storage.py" in names
    assert {"s3ferry/service/static/page.js", "s3ferry/service/static/page.css"} <= set(names)  # serve's page
    assert any(n.endswith((".dist-info/licenses/LICENSE", ".dist-info/LICENSE")) for n in names), names
    leaked = [n for n in names if "testbed" in n or "/tests/" in n or n.startswith("tests/")
              or "ftp_server" in n or "http_server" in n]
    assert not leaked, leaked


def test_clean_venv_install_runs(wheel: Path, tmp_path: Path) -> None:
    """`pip install s3ferry-*.whl` into a new virtualenv (dependencies from the package index), then the
    command and the API copy a file and report the same SHA-256 as the source."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=900, env=clean)
    version = subprocess.run([str(env_dir / "bin" / "s3ferry"), "--version"], capture_output=True, text=True,
                             check=True, env=clean, timeout=60)
    assert version.stdout.strip() == "s3ferry, version 0.1.0"
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    want = hashlib.sha256(source.read_bytes()).hexdigest()
    home = {**clean, "HOME": str(tmp_path), "S3FERRY_STATE_DIR": str(tmp_path / "state")}
    subprocess.run([str(env_dir / "bin" / "s3ferry"), "cp", "-q", str(source), str(tmp_path / "cli.bin")],
                   check=True, env=home, timeout=120)
    assert hashlib.sha256((tmp_path / "cli.bin").read_bytes()).hexdigest() == want
    api = (f"import s3ferry; r = s3ferry.copy({str(source)!r}, {str(tmp_path / 'api.bin')!r}); "
           "print(r.size, s3ferry.__file__)")
    done = subprocess.run([str(python), "-c", api], capture_output=True, text=True, check=True, env=home,
                          cwd=tmp_path, timeout=120)
    size, where = done.stdout.split()
    assert int(size) == source.stat().st_size
    assert where.startswith(str(env_dir)), where  # the installed copy, not this checkout's src/
    assert hashlib.sha256((tmp_path / "api.bin").read_bytes()).hexdigest() == want

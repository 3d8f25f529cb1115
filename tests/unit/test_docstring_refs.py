"""Every cross-reference to ``s3ferry.…`` in the sources' docstrings and comments names something that exists:
modules moved into layers (engine, core, operations) and packages (backends.sftp, backends.s3) left 18 of
them pointing at old paths, which a reader following them could not find."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|exc|obj):`~?(s3ferry(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def _resolves(ref: str) -> bool:
    parts = ref.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_full_reference_names_something_that_exists() -> None:
    refs = {(path.relative_to(SRC).as_posix(), match.group(1))
            for path in SRC.rglob("*.py") for match in ROLE.finditer(path.read_text())}
    assert len(refs) > 50  # the pattern still finds them
    broken = sorted(f"{where}: {ref}" for where, ref in refs if not _resolves(ref))
    assert not broken, "\n".join(broken)

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))  # the package without installing it

from fake_server import FakeServing, serve  # noqa: E402


@pytest.fixture
def fake() -> Iterator[tuple[FakeServing, str]]:
    """A fake TF Serving on a free port; yields the servicer and its ``HOST:PORT``."""
    with serve() as (servicer, port):
        yield servicer, f"127.0.0.1:{port}"

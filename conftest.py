"""Paths every test suite shares: the repository, TF Serving's test models, test helpers.

TF Serving's own test models (with known answers) live outside the repository, in
``../shared/testdata/tfserving``; ``TFSERVING_TESTDATA`` points elsewhere. This is the one
place that location is computed: pytest suites take the ``testdata`` fixture, and
``scripts/molecule.sh`` and the benchmarks import ``TESTDATA`` from here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
TESTDATA = Path(
    os.environ.get("TFSERVING_TESTDATA") or REPO.parent / "shared" / "testdata" / "tfserving"
)

# Helpers shared by the molecule scenarios' testinfra suites (converge_again, inner_images).
sys.path.insert(0, str(REPO / "molecule" / "shared"))


@pytest.fixture(scope="session")
def testdata() -> Path:
    """TF Serving's test models; fails (not skips) when they are missing."""
    if not (TESTDATA / "saved_model_half_plus_two_cpu" / "00000123" / "saved_model.pb").is_file():
        pytest.fail(f"TF Serving test models are missing: expected them under {TESTDATA}")
    return TESTDATA

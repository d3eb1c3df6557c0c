"""Paths every test suite shares: the repository, the TF Serving test models, test helpers.

The test models (TF Serving's half_plus_two and half_plus_three with known answers, and its
config files) are generated inside the repository by ``scripts/make_test_models.py`` into
``.cache/testdata/tfserving`` (``make testdata``, part of ``make setup``). This is the one
place that location is computed: pytest suites take the ``testdata`` fixture, and the
benchmarks and molecule tests import ``TESTDATA`` from here (the molecule prepare playbooks
compute the same path from ``MOLECULE_PROJECT_DIRECTORY``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
TESTDATA = REPO / ".cache" / "testdata" / "tfserving"

# Helpers shared by the molecule scenarios' testinfra suites (converge_again, inner_images).
sys.path.insert(0, str(REPO / "molecule" / "shared"))


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The generated test models; fails (not skips) when they are missing."""
    if not (TESTDATA / "saved_model_half_plus_two_cpu" / "00000123" / "saved_model.pb").is_file():
        pytest.fail(
            f"test models are missing under {TESTDATA}: run `make setup` (or `make testdata`)"
        )
    return TESTDATA

"""Skips for a missing tool that `make test` turns into failures.

A suite that needs promtool or TensorFlow skips, naming what is missing, when run by hand
on a machine without it; `make unit` (and so `make test`), which installs them, sets
TFSERVING_REQUIRE_TOOLS=1, and then the same test fails instead: a check that would
silently not run is a missing check.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

REQUIRED = os.environ.get("TFSERVING_REQUIRE_TOOLS") == "1"


def missing(reason: str, module_level: bool = False) -> NoReturn:
    """Skip (fail under TFSERVING_REQUIRE_TOOLS=1) because of `reason`."""
    if REQUIRED:
        pytest.fail(f"{reason} (TFSERVING_REQUIRE_TOOLS=1: make test needs it)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def needs(available: bool, reason: str) -> Callable[[Any], Any]:
    """A test decorator: run the test when `available`, else `missing(reason)`."""
    if available:
        return lambda test: test

    def decorate(test: Any) -> Any:
        @functools.wraps(test)
        def unavailable(*args: Any, **kwargs: Any) -> None:
            missing(reason)

        return unavailable

    return decorate

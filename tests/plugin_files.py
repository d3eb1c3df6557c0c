"""Load the collection's plugin files (plugins/KIND/NAME.py) as plain modules for tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_plugin(kind: str, name: str, module_name: str | None = None) -> ModuleType:
    """plugins/KIND/NAME.py, registered in sys.modules (dataclasses look modules up there)."""
    return load_file(ROOT / "plugins" / kind / f"{name}.py", module_name or name)


def load_file(path: Path, module_name: str) -> ModuleType:
    """A plugin file anywhere in the checkout (e.g. a scenario's filter_plugins/), loaded as
    load_plugin loads the collection's."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module

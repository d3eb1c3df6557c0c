"""TF Serving protocol buffer modules, loaded without starting the TensorFlow runtime.

The generated ``tensorflow_serving.apis`` modules import their dependencies as
``tensorflow.core.framework.*_pb2`` and so on. A plain import of those names first runs
``tensorflow/__init__.py``, which loads the whole runtime (several seconds and thousands of
modules). The ``__init__.py`` files of the intermediate packages that hold the generated
modules are empty, so this module registers those packages directly from their directories
before importing the protos. ``import a.b.c`` also binds the top-level package ``a``, so an
empty placeholder for ``tensorflow`` is registered while the protos load and removed right
after: a later ``import tensorflow`` by the caller runs normally and reuses the already
loaded proto modules.

Set ``TFS_CLIENT_FULL_TF_IMPORT=1`` to skip this and use ordinary imports.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path

# Packages (below ``tensorflow``) that hold the generated modules the serving APIs use.
_PROTO_PACKAGES = (
    "core",
    "core.framework",
    "core.protobuf",
    "core.example",
    "compiler",
    "compiler.xla",
    "compiler.xla.tsl",
    "compiler.xla.tsl.protobuf",
)


def _register_proto_packages() -> types.ModuleType | None:
    """Register the proto-only packages of TensorFlow; return the placeholder package."""
    if os.environ.get("TFS_CLIENT_FULL_TF_IMPORT") == "1" or "tensorflow" in sys.modules:
        return None
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    plan: list[tuple[str, Path]] = []
    for rel in _PROTO_PACKAGES:
        name = f"tensorflow.{rel}"
        init = root.joinpath(*rel.split("."), "__init__.py")
        if name in sys.modules:
            continue
        # Only packages whose __init__ is empty are safe to load on their own.
        if not init.is_file() or init.stat().st_size != 0:
            return None
        plan.append((name, init))
    placeholder = types.ModuleType("tensorflow")
    placeholder.__path__ = [str(root)]
    placeholder.__spec__ = importlib.machinery.ModuleSpec("tensorflow", None, is_package=True)
    sys.modules["tensorflow"] = placeholder
    for name, init in plan:
        pkg_spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(init.parent)]
        )
        if pkg_spec is None or pkg_spec.loader is None:  # pragma: no cover - defensive
            raise ImportError(f"cannot load package {name} from {init}")
        module = importlib.util.module_from_spec(pkg_spec)
        sys.modules[name] = module
        pkg_spec.loader.exec_module(module)
    return placeholder


_PLACEHOLDER = _register_proto_packages()
LIGHT_IMPORT = _PLACEHOLDER is not None

# ruff: noqa: E402 - the imports below must follow the package registration above.
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

if _PLACEHOLDER is not None and sys.modules.get("tensorflow") is _PLACEHOLDER:
    del sys.modules["tensorflow"]
del _PLACEHOLDER

__all__ = [
    "LIGHT_IMPORT",
    "classification_pb2",
    "example_pb2",
    "feature_pb2",
    "get_model_metadata_pb2",
    "get_model_status_pb2",
    "input_pb2",
    "model_pb2",
    "model_server_config_pb2",
    "model_service_pb2_grpc",
    "predict_pb2",
    "prediction_service_pb2_grpc",
    "regression_pb2",
    "tensor_pb2",
    "tensor_shape_pb2",
    "types_pb2",
]

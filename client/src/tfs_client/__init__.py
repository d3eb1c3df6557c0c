"""Client for TensorFlow Serving's gRPC API: library (:mod:`tfs_client.api`) and CLI."""

__version__ = "0.1.0"

"""tfs_standin: a TensorFlow Serving compatible stand-in server.

It keeps tensorflow_model_server's flags, config files, gRPC and REST APIs and version
lifecycle, and runs real SavedModels with TensorFlow, for machines where the real server
cannot be installed. It is a stand-in, not TensorFlow Serving.
"""

__version__ = "2.21.0-standin.1"
PROG = "tfs_standin"

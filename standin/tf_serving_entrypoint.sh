#!/bin/bash
# Entrypoint of the TF Serving stand-in image. It keeps the contract of TF Serving's
# images: serve ${MODEL_BASE_PATH}/${MODEL_NAME} on 8500 (gRPC) and 8501 (REST); extra
# container arguments are appended as flags (a --model_config_file overrides the model).
#
# As in TF Serving's own entrypoint, the server runs as a child of this shell (no exec):
# the shell is PID 1 and has no SIGTERM handler, so `docker stop` waits for the container's
# stop timeout and then kills both. The server's exit status is the container's.
tensorflow_model_server --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"

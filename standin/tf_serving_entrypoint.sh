#!/bin/sh
# Entrypoint of the TF Serving stand-in image. It keeps the contract of TF Serving's
# images: serve ${MODEL_BASE_PATH}/${MODEL_NAME} on 8500 (gRPC) and 8501 (REST); extra
# container arguments are appended as flags (a --model_config_file overrides the model).
set -e
exec tensorflow_model_server --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"

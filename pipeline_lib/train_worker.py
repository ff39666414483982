"""Entry point of one torchrun worker: `python -m pipeline_lib.train_worker CONFIG_YAML RUN_DIR`."""

import sys

from pipeline_lib.config import load_config
from pipeline_lib.environment import apply_quiet_env
from pipeline_lib.layout import RunDir
from pipeline_lib.training import train

if __name__ == "__main__":
    apply_quiet_env()
    train(load_config(sys.argv[1]), RunDir(sys.argv[2]))

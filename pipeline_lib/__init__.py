"""tunepipe's library: the pipeline's steps as plain functions (no Prefect import anywhere below)."""

import logging

# Step progress (epochs, cache hits) is INFO; it shows wherever the application attaches a handler
# (the CLI for `tunepipe step`, Prefect's extra loggers for flows).
logging.getLogger(__name__).setLevel(logging.INFO)

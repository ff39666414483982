"""Slices of the test split defined in config (regex or keywords), e.g. negations or number-heavy sentences."""

from __future__ import annotations

import re

import numpy as np

from pipeline_lib.config import SliceConfig


def slice_regex(slice_cfg: SliceConfig) -> re.Pattern[str]:
    """One case-insensitive regex: the pattern, or any of the keywords as a whole word."""
    parts = []
    if slice_cfg.pattern:
        parts.append(f"(?:{slice_cfg.pattern})")
    if slice_cfg.keywords:
        parts.append(r"\b(?:" + "|".join(re.escape(k) for k in slice_cfg.keywords) + r")\b")
    return re.compile("|".join(parts), re.IGNORECASE)


def slice_mask(texts: list[str], slice_cfg: SliceConfig) -> np.ndarray:
    """True for each text in the slice."""
    regex = slice_regex(slice_cfg)
    return np.array([regex.search(text) is not None for text in texts], dtype=bool)

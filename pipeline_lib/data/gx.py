"""Great Expectations, the way the rules use it: one validation definition over a whole pandas DataFrame in an
ephemeral context (no project folder, no analytics, no progress bars)."""

from __future__ import annotations

import os
import warnings
from typing import Any

from pipeline_lib.environment import PYSPARK_PANDAS_NOTICE


def import_gx() -> Any:
    """great_expectations, without the notice pyspark prints when GX probes it: GX imports pyspark's Spark Connect
    module whenever pyspark is installed (the Spark scoring engine's extra), and pyspark warns there that it does not
    yet fully support pandas 3 (a FutureWarning on every run, about a path never taken: tunepipe's GX validates
    pandas frames only). Only that notice, and only during this import, is ignored."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PYSPARK_PANDAS_NOTICE, category=FutureWarning)
        import great_expectations

    return great_expectations


def gx_definition(name: str, expectations: list[Any]) -> Any:
    """A GX validation definition of `expectations` over a whole pandas DataFrame, in an ephemeral context
    (run it with `batch_parameters={"dataframe": frame}`)."""
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("tunepipe").add_dataframe_asset("splits")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name="validate", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite)
    )

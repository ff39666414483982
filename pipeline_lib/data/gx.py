"""Great Expectations, the way the rules use it: one validation definition over a whole pandas DataFrame in an
ephemeral context (no project folder, no analytics, no progress bars)."""

from __future__ import annotations

import os
from typing import Any


def gx_definition(name: str, expectations: list[Any]) -> Any:
    """A GX validation definition of `expectations` over a whole pandas DataFrame, in an ephemeral context
    (run it with `batch_parameters={"dataframe": frame}`)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("tunepipe").add_dataframe_asset("splits")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name="validate", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite)
    )

"""Operations the CLI offers around the flow, each composed of the packages below it: `init` (inspect a new
dataset and propose a config that runs as is), `promote` (re-gate a
registered version, then move the champion), `data_add` (validate new rows, then make a new DVC version) and
`reproduce` (rebuild a registered version from its lineage in a scratch git worktree and compare its metrics) and
`tune` (an Optuna search on the validation split, trials nested in MLflow, the best as a config overlay)."""

"""Operations the CLI offers around the flow, each composed of the packages below it: `promote` (re-gate a
registered version, then move the champion) and `data_add` (validate new rows, then make a new DVC version)."""

"""Monitoring of the world through scored data: `tunepipe trend` turns a scored dataset (the output of `tunepipe
score`) into the watched label's share and a sentiment index per group and time window, aggregated out of core
(`trend`), tests whether the latest window of each group surged against its trailing baseline (`stats`), writes
the table, `trend.json` and an HTML report with charts and examples (`report`), and sends each new alert once
(`alerts`)."""

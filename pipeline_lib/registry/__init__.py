"""The MLflow registry side: the tracking store and model references (`store`), registering a run's model with a
journal that rolls back interrupted attempts (`registration`, `journal`), bounded retries against a server that
goes away (`retries`, `errors`), lineage tags and their read-back (`lineage`), the library versions each run records
(`libraries`), and every move of the champion alias with its ledger (`promotion`, `ledger`)."""

-- The `mlflow` database is POSTGRES_DB; Prefect and the Optuna studies of `tunepipe tune` get their own.
CREATE DATABASE prefect;
CREATE DATABASE optuna;

-- The `mlflow` database is POSTGRES_DB; Prefect gets its own.
CREATE DATABASE prefect;

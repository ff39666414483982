# MLflow tracking server (same major version as the project) with the PostgreSQL driver and the S3 client.
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow>=3.4,<4" "psycopg2-binary>=2.9" "boto3>=1.34"
EXPOSE 5000

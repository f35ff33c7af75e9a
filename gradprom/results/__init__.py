"""What a search leaves, and nothing that runs one: the experiment folder and its manifest (`experiment`), storage
URIs (`storage`), result rows (`rows`), Parquet read and write with the checks that a table is what it claims
(`parquet`), many experiments as one table (`aggregate`) and MLflow runs (`tracking`). Never imports Ray or
Optuna (a test checks)."""

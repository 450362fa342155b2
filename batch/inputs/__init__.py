"""Where rows come from: CSV and Parquet files, S3 objects and datasets, the key scan, shards."""

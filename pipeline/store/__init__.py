"""Parquet datasets: schemas, atomic parts, manifests."""

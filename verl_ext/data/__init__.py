"""Data for veRL: the parquet schema and shared pieces of the converters, and the dataset hook used at train time."""

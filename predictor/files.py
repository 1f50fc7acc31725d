"""The files of an α-predictor artifact directory (light: readers need no torch or sklearn)."""

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
HELDOUT_FILE = "heldout.parquet"

"""The files of an α-predictor artifact directory (light: readers need no torch or sklearn)."""

FORMAT_VERSION = 2  # 2: skops/safetensors models and sha256 of every file (1 stored a pickle)
METADATA_FILE = "metadata.json"
HELDOUT_FILE = "heldout.parquet"

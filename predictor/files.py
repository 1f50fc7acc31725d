"""The files of an α-predictor artifact directory (light: readers need no torch or sklearn)."""

FORMAT_VERSION = 3  # 3: a decision policy relative to the best fixed α; 2: skops/safetensors and sha256 of every file
METADATA_FILE = "metadata.json"
HELDOUT_FILE = "heldout.parquet"

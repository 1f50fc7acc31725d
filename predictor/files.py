"""The files of an α-predictor artifact directory (light: readers need no torch or sklearn)."""

# 4: metadata.json carries its own sha256; 3: a decision policy relative to the best fixed α;
# 2: skops/safetensors and sha256 of every file
FORMAT_VERSION = 4
READABLE_FORMATS = (3, 4)
METADATA_FILE = "metadata.json"
HELDOUT_FILE = "heldout.parquet"
METADATA_HASH = "metadata_sha256"

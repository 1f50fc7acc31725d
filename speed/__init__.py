"""Speed scripts: each prints ratios measured in one run on the same machine."""

"""α-predictor: training, artifact, inference (see issue: α-predictor)."""

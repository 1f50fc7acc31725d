"""Strategies, the decoder loop, the α prefix tree and first-token features, over the engine interface."""

"""Decoding with limited teacher supervision: library code shared by the jobs."""

"""Decoding with limited teacher supervision: the library behind the jobs. Layers, in import
order: config ← data, models ← engine ← decoding ← runtime ← tasks (see ARCHITECTURE.md)."""

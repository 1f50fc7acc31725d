"""The jobs' logic: evaluate, label, signals, distill (none imports another)."""

"""The engine interface (`interface.py`) and its transformers and Ray implementations."""

"""Dataset rows, prompt templates, answer extraction and scoring."""

"""Checkpoint exchange with other libraries (`hf`: Hugging Face transformers' T5)."""

"""RLHF in miniature: the InstructGPT recipe on small GPT-2 models."""

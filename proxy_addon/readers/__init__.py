"""Readers of LLM exchanges, one module per API family (see conversation.py)."""

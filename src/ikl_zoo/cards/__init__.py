"""Hugging Face model cards and RobustBench submissions."""

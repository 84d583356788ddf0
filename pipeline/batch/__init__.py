"""Batch conversion over a manifest of many models."""

"""Isolated Python environments: the venv builder, framework environments and their worker, the serving environment."""

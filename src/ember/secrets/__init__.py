"""Secrets of functions: values encrypted at rest, delivered to instances as variables."""

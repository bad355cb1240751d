"""Metadata persistence: functions, versions and aliases in SQLite or PostgreSQL."""

from ember.store.base import MetadataStore, Page
from ember.store.sql import SqlMetadataStore

__all__ = ["MetadataStore", "Page", "SqlMetadataStore"]

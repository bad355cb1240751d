"""Code and layer archives: stored by sha256, checked for safety, unpacked once read-only."""

from ember.artifacts.archive import DEFAULT_EXCLUDES, zip_directory
from ember.artifacts.base import ArtifactLimits, ArtifactStore
from ember.artifacts.filesystem import FilesystemArtifactStore
from ember.artifacts.unzip import CheckedArchive, Entry, open_archive

__all__ = [
    "DEFAULT_EXCLUDES",
    "ArtifactLimits",
    "ArtifactStore",
    "CheckedArchive",
    "Entry",
    "FilesystemArtifactStore",
    "open_archive",
    "zip_directory",
]

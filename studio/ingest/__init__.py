"""Ingest: files and datasets (PatternReframe, seed lists, CACTUS) into the store."""

from studio.ingest.importer import FileReport, ImportReport, StrictImportError, import_sources

__all__ = ["FileReport", "ImportReport", "StrictImportError", "import_sources"]

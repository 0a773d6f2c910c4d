"""Ingestion: read a source, check, reduce and analyse each crystal into a record."""

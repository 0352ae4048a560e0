"""Bulk import of CSV and JSONL files into one entity, through the applier."""

"""The manifest: one Parquet row per small object, with a versioned schema."""

from soebench.manifest.io import Manifest, read_manifest, write_manifest
from soebench.manifest.schema import COLUMNS, PROMPT_KEYS, SCHEMA, SCHEMA_VERSION, validate_table

__all__ = [
    "COLUMNS",
    "PROMPT_KEYS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Manifest",
    "read_manifest",
    "validate_table",
    "write_manifest",
]

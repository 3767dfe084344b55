"""The Dagster layer: thin assets, checks, sensors and the settings resource over `pipeline` (DESIGN.md)."""

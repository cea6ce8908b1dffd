"""Development tools (not shipped): the custom import-linter contract."""

"""What persists between runs: the SQLite state store, the output cache and the project lock."""

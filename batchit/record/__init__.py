"""What a run leaves behind: its manifest and run directory."""

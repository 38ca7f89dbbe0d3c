"""Statistics over run records."""

"""Launching cells: parallel local workers, SLURM arrays, memory planning (claims: claims.py)."""

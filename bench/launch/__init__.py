"""Launching cells: claims on a shared results folder, local workers, SLURM."""

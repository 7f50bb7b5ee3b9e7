"""Experiment planning: the paper's small network as nnU-Net plans."""

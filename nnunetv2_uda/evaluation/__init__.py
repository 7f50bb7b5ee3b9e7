"""FLARE 2024 evaluation: DSC and NSD per case and organ the way the challenge scores them, and efficiency profiling.

Accuracy and speed claims against the paper and the challenge's leaders only hold when measured with the
challenge's own rules (tolerances, empty-mask rules, z-range cropping) and its efficiency protocol.
"""

"""nnunetv2-uda: CT -> multi-sequence MRI unsupervised domain adaptation as an nnU-Net v2 plugin.

Kept import-free on purpose: ``nnunetv2_uda.pth`` imports this package at every interpreter start.
"""

__version__ = "0.1.0"

"""ASIT: anatomy-space image translation (paper's stage 1).

CT and MRI differ in intensity, not in anatomy. ``anatomy_space`` maps normalized images to a spacing-aware 3D Sobel
gradient magnitude (the "anatomy space"); ``cyclegan`` trains a CycleGAN from Sobel-CT to MRI intensities (or, as
the ablation, from raw CT); ``translate`` turns a labeled CT dataset into a fake-MRI nnU-Net raw dataset.
``anatomy_preprocessor`` lets nnU-Net train and predict in anatomy space through its own pipeline.
See docs/translation.md.
"""

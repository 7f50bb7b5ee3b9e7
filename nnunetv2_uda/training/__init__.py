"""Training: the paper's protocol as nnU-Net trainers, and budget variants of them."""

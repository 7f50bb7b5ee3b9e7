"""translation stage."""

"""phantoms stage."""

"""pseudolabels stage."""

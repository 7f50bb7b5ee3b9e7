"""Fast inference in the paper's order: class decision at network resolution, then only the label map is resampled.

``nnUNetPredictorFast`` (:mod:`.predictor`) is a drop-in replacement for nnU-Net's ``nnUNetPredictor``;
``nnUNetv2_predict_fast`` (:mod:`.cli`) takes ``nnUNetv2_predict``'s arguments. See docs/inference.md.
"""

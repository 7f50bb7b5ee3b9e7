"""The choices of ``nnUNetv2_predict_fast``'s options, importable without torch so that the command parses (and
refuses bad arguments) before anything heavy is imported."""

LABEL_RESAMPLING_MODES = ("nearest", "linear")
INPUT_RESAMPLING_MODES = ("torch", "nnunet")

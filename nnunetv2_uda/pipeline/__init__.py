"""The one-command pipeline (``nnUNetv2_uda_run``, ``nnUNetv2_uda_demo``): config, resumable steps, report.

``config`` (schema and checks), ``manifest`` (what finished, on which inputs), ``datasets`` (the nnU-Net raw
datasets it creates), ``stages`` (the paper's stages as steps calling nnU-Net and our commands), ``runner`` (skip,
resume, rerun), ``report`` (report.md), ``cli`` (the commands). See docs/pipeline.md and docs/config.md.
"""

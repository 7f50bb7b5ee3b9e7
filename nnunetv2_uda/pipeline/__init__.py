"""The one-command pipeline (``nnUNetv2_uda_run``, ``nnUNetv2_uda_demo``): config, resumable steps, report.

``config`` (schema and checks), ``rows`` (the ablation rows), ``graph`` (steps, their context, running order),
``steps`` (one module per stage, and the step graph the rows need), ``nnunet_commands`` (the nnU-Net calls the steps
share), ``manifest`` (what finished, on which inputs), ``datasets`` (the nnU-Net raw datasets it creates), ``runner``
(skip, resume, rerun), ``report`` (report.md), ``recipes`` and ``cli`` (the commands). See docs/pipeline.md and
docs/config.md.
"""

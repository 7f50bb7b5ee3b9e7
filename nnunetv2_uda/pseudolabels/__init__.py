"""Pseudo-labels for the unlabeled MRI target: snapshots during training, uncertainty filtering, domain matching.

- :mod:`.snapshots`: the record a ``nnUNetTrainerUDAPseudoLabel`` run keeps of its prediction snapshots.
- :mod:`.uncertainty`: the paper's snapshot uncertainty (eq. 7) and the union ensemble of snapshots.
- :mod:`.filtering`: ``nnUNetv2_uda_filter_pseudolabels``, keeps the certain cases as an nnU-Net raw dataset.
- :mod:`.sequences`, :mod:`.registration`, :mod:`.matching`: ``nnUNetv2_uda_mdm``, multi-domain matching.
"""

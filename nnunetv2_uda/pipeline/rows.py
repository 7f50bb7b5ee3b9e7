"""The ablation rows as values: which network's pseudo-labels a row starts from, whether MDM matches them across
MRI sequences and how many rounds of self-training with filtering (PLF) follow.

Table 7's rows (only CT, CycleGAN, ASIT, ASIT + MDM, ASIT + MDM + PLF) and, beyond the paper, self-training from the
CT or the plain-CycleGAN network's pseudo-labels (only CT + PLF, CycleGAN + PLF), and the CT network's pseudo-labels
matched across sequences (only CT + MDM, with or without PLF); every PLF row has a second-round
variant '<row>2' that starts from the first round's final network. The steps a row needs are built from these fields
(:mod:`nnunetv2_uda.pipeline.steps`), never read back from the row's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SOURCES = ("ct", "asit", "cyclegan")  # what the source network trains on: the CT, or fake MRI of that translator


@dataclass(frozen=True)
class Row:
    """One ablation row."""

    name: str
    title: str
    source: str  # one of SOURCES: the network whose pseudo-labels the row starts from
    mdm: bool = False
    rounds: int = 0  # rounds of self-training with filtering
    in_config: bool = True  # False: only what an MDM row becomes when the MRI has a single sequence

    @property
    def translator(self) -> str | None:
        """The translator whose fake MRI trains the source network, or None for the CT network."""
        return None if self.source == "ct" else self.source

    @property
    def chain(self) -> str:
        """Names the self-training steps and datasets of the row: 'asit_mdm', 'asit', 'ct' or 'cyclegan'."""
        return f"{self.source}_mdm" if self.mdm else self.source


_FIRST_ROUND = (
    Row("only_ct", "only CT", "ct"),
    Row("cyclegan", "CycleGAN", "cyclegan"),
    Row("asit", "ASIT", "asit"),
    Row("asit_mdm", "ASIT + MDM", "asit", mdm=True),
    Row("asit_mdm_plf", "ASIT + MDM + PLF", "asit", mdm=True, rounds=1),
    Row("asit_plf", "ASIT + PLF", "asit", rounds=1, in_config=False),
    Row("only_ct_plf", "only CT + PLF", "ct", rounds=1),
    Row("only_ct_mdm", "only CT + MDM", "ct", mdm=True),
    Row("only_ct_mdm_plf", "only CT + MDM + PLF", "ct", mdm=True, rounds=1),
    Row("cyclegan_plf", "CycleGAN + PLF", "cyclegan", rounds=1),
)
ROWS = {row.name: row for row in _FIRST_ROUND}
ROWS.update({f"{row.name}2": dataclasses.replace(row, name=f"{row.name}2", title=f"{row.title} x2", rounds=2)
             for row in _FIRST_ROUND if row.rounds == 1})
ABLATION_ROWS = tuple(name for name, row in ROWS.items() if row.in_config)  # what a config may ask for
ROW_TITLES = {name: row.title for name, row in ROWS.items()}


def without_mdm(row: Row) -> Row | None:
    """The row that runs instead of an MDM row when the MRI has one sequence: the same chain without MDM, or None
    when the row would then be another row (ASIT + MDM is ASIT)."""
    if not row.rounds:
        return None
    return next(other for other in ROWS.values()
                if (other.source, other.mdm, other.rounds) == (row.source, False, row.rounds))

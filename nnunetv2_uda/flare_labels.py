"""The FLARE 2024 abdominal organ label ids, as every stage (phantoms, evaluation, pipeline) names them.

The names are those of the FLARE/BTCV ``dataset.json`` files, so datasets are matched by name, not by id.
"""

FLARE_ORGANS: dict[str, int] = {
    "liver": 1,
    "right kidney": 2,
    "spleen": 3,
    "pancreas": 4,
    "aorta": 5,
    "inferior vena cava": 6,
    "right adrenal gland": 7,
    "left adrenal gland": 8,
    "gallbladder": 9,
    "esophagus": 10,
    "stomach": 11,
    "duodenum": 12,
    "left kidney": 13,
}

FLARE_LABELS: dict[str, int] = {"background": 0, **FLARE_ORGANS}

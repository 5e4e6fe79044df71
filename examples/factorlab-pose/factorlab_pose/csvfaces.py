"""A data set `factorlab prepare` can cache: images listed in root/faces.csv as `path,expression,part`.

`part` is `train` or `test`; `val_fraction` of the train rows are held out (seeded) as the val split.
"""

import csv
from typing import Literal

from pydantic import Field

from factorlab import Sample, Scan, Source, SourceConfig

EXPRESSIONS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]


class CSVFacesConfig(SourceConfig):
    align: Literal["none"] = Field("none", description="Faces are already cropped: 'none' (the only choice here).")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Train rows held out as the val split.")
    seed: int = Field(0, description="Seed of the train/val hold-out.")


def scan(config: CSVFacesConfig) -> Scan:
    """List root/faces.csv: one sample per row, the whole image being the face."""
    with open(config.root / "faces.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    samples = [
        Sample(row["path"], f"faces.csv:{i + 2}", {"expression": EXPRESSIONS.index(row["expression"])}, row["part"])
        for i, row in enumerate(rows)
    ]
    return Scan(samples, {"expression": EXPRESSIONS})


SOURCE = Source("csvfaces", CSVFacesConfig, scan, "images listed in root/faces.csv (path,expression,part)")
build = SOURCE.build

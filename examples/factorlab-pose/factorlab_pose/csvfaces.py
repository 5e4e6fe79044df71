"""A data set `factorlab prepare` can cache: images listed in root/faces.csv as `path,expression,part`.

`part` is `train` or `test`; `val_fraction` of the train rows are held out (seeded) as the val split.
"""

import csv
from typing import Literal

from pydantic import Field

from factorlab import DataError, Sample, Scan, Source, SourceConfig

EXPRESSIONS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]


class CSVFacesConfig(SourceConfig):
    align: Literal["none"] = Field("none", description="Faces are already cropped: 'none' (the only choice here).")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Train rows held out as the val split.")
    seed: int = Field(0, description="Seed of the train/val hold-out.")


def scan(config: CSVFacesConfig) -> Scan:
    """List root/faces.csv: one sample per row, the whole image being the face. A bad file is a DataError
    naming the file and line (exit 2, no traceback)."""
    path = config.root / "faces.csv"
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc}); give data.root the folder that holds faces.csv") from None
    samples = []
    for line, row in enumerate(rows, start=2):
        if row.get("expression") not in EXPRESSIONS or row.get("part") not in ("train", "test") or not row.get("path"):
            raise DataError(f"{path}:{line}: need path, expression (one of {EXPRESSIONS}) and part (train or test)")
        samples.append(
            Sample(row["path"], f"faces.csv:{line}", {"expression": EXPRESSIONS.index(row["expression"])}, row["part"])
        )
    return Scan(samples, {"expression": EXPRESSIONS})


SOURCE = Source("csvfaces", CSVFacesConfig, scan, "images listed in root/faces.csv (path,expression,part)")
build = SOURCE.build

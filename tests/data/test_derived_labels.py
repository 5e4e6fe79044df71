"""Labels a factor derives from ground truth: the wrapper keeps everything the wrapped data set says."""

from __future__ import annotations

import numpy as np
import pytest

from factorlab import DataError, Factor, FactorDataset
from factorlab.data.base import labels_for_evaluation
from factorlab.data.loading import DerivedLabels


class Subjects(FactorDataset):
    """Four samples: identity 'a' seen in training, 'b' held out (label -1), and a continuous yaw."""

    classes = {"identity": ["a"]}
    unseen_classes = {"identity": ["b"]}

    def __len__(self) -> int:
        return 4

    def image(self, index: int) -> np.ndarray:
        return np.zeros((8, 8, 3), dtype=np.uint8)

    def labels(self, factor: str) -> np.ndarray:
        return np.array([0, 0, -1, -1])

    def ground_truth(self) -> dict[str, np.ndarray]:
        return {"yaw": np.array([-0.4, 0.4, -0.1, 0.2])}


POSE = Factor("pose", ("left", "right"), derive=lambda truth: (truth["yaw"] > 0).astype(np.int64), needs=("yaw",))


def test_derived_labels_keep_the_held_out_classes_of_the_wrapped_set() -> None:
    base = Subjects()
    wrapped = DerivedLabels(base, {"pose": POSE})
    assert list(wrapped.labels("pose")) == [0, 1, 0, 1] and wrapped.classes["pose"] == ["left", "right"]
    ids, names = labels_for_evaluation(wrapped, "identity")
    expected_ids, expected_names = labels_for_evaluation(base, "identity")
    assert list(ids) == list(expected_ids) and names == expected_names == ["a", "b"]


def test_a_factor_needing_ground_truth_the_set_lacks_is_named() -> None:
    tilt = Factor("tilt", ("down", "up"), derive=lambda truth: truth["pitch"], needs=("pitch",))
    with pytest.raises(DataError, match=r"cannot label factor 'tilt'.*\['pitch'\]"):
        DerivedLabels(Subjects(), {"tilt": tilt}, "subjects")

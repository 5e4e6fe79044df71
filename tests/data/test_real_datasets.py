"""The real data sets' loaders on tiny trees in their official layouts: counts, splits, label mappings, bad input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factorlab.data import affectnet, ckplus, fer2013, imagefolder, rafdb
from factorlab.data.align import TEMPLATE_5, FaceCropper, MTCNNDetector, align_landmarks, similarity_transform
from factorlab.data.base import FactorDataset, labels_for_evaluation
from factorlab.data.records import read_image
from factorlab.data.sampling import FaceAugment, epoch_order
from factorlab.errors import DataError
from factorlab.plugins import get_host
from factorlab.testing.layouts import (
    CK_SUBJECTS,
    EXPRESSION_8,
    FER_USAGES,
    affectnet_row,
    face,
    label_of,
    write_affectnet_csv,
    write_affectnet_npy,
    write_ckplus,
    write_fer2013,
    write_imagefolder,
    write_rafdb,
)

MODULES = (affectnet, ckplus, fer2013, rafdb, imagefolder)


def native_names(dataset: FactorDataset, native_table: dict[int, str]) -> list[tuple[str, str]]:
    """(class the dataset says, class the pixels' native id means) for every sample."""
    names = dataset.classes["expression"]
    return [
        (names[int(dataset.labels("expression")[i])], native_table[label_of(dataset.image(i))])
        for i in range(len(dataset))
    ]


# ------------------------------------------------------------------------------------------ label mappings


def test_mapping_tables_follow_each_data_sets_documentation():
    # The tables as each data set's owners document them (DATASETS.md), onto AffectNet-order names.
    assert affectnet.EXPRESSIONS == dict(enumerate(EXPRESSION_8))
    assert ckplus.EMOTIONS == {
        0: "neutral",
        1: "anger",
        2: "contempt",
        3: "disgust",
        4: "fear",
        5: "happy",
        6: "sad",
        7: "surprise",
    }
    assert fer2013.EMOTIONS == {0: "anger", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}
    assert rafdb.EMOTIONS == {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "anger", 7: "neutral"}


def test_every_mapping_lands_on_the_expression_plugins_canonical_names():
    factorlab_expression = pytest.importorskip("factorlab_expression")
    for table in (affectnet.EXPRESSIONS, ckplus.EMOTIONS, fer2013.EMOTIONS, rafdb.EMOTIONS):
        assert set(table.values()) <= set(factorlab_expression.CLASSES)
        assert len(set(table.values())) == len(table)  # no two native ids collapse onto one class


def test_every_real_data_set_is_registered_with_its_source():
    registry = get_host().registry("datasets")
    for module in MODULES:
        entry = registry.get(module.SOURCE.name)
        assert entry.plugin == "core.datasets" and entry.factory == module.build and entry.description
        assert entry.meta["source"] == f"{module.__name__}:SOURCE" and entry.config is module.SOURCE.config
        config = entry.config
        assert config.model_config["extra"] == "forbid"
        assert {"root", "cache", "on_error"} <= set(config.model_fields)
        assert all(field.description for field in config.model_fields.values()), module.__name__


# ------------------------------------------------------------------------------------------------ AffectNet


@pytest.fixture(scope="module")
def affectnet_root(tmp_path_factory) -> Path:
    return write_affectnet_csv(tmp_path_factory.mktemp("affectnet"), {"training.csv": 3, "validation.csv": 2})


def affectnet_config(root: Path, **kw) -> affectnet.AffectNetConfig:
    return affectnet.AffectNetConfig(root=root, **kw)


def test_affectnet_csv_counts_per_split_and_class(affectnet_root, expression8):
    config = affectnet_config(affectnet_root, val_fraction=0.25)
    train = affectnet.build(config, split="train", image_size=32, factors=expression8)
    val = affectnet.build(config, split="val", image_size=32, factors=expression8)
    test = affectnet.build(config, split="test", image_size=32, factors=expression8)
    assert len(train) + len(val) == 24 and len(val) > 0
    assert not set(train.sources) & set(val.sources)
    assert Counter(test.labels("expression").tolist()) == {k: 2 for k in range(8)}
    # ids 8-10 are not expressions: dropped and counted, one each
    assert train.dropped["listing: expression 8 (none)"] == 1
    assert train.dropped["listing: expression 10 (no-face)"] == 1
    item = test[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.uint8


@pytest.mark.parametrize("align", ["box", "landmarks", "none"])
def test_affectnet_labels_match_the_pixels_native_ids(affectnet_root, expression8, align):
    test = affectnet.build(
        affectnet_config(affectnet_root, align=align), split="test", image_size=32, factors=expression8
    )
    pairs = native_names(test, affectnet.EXPRESSIONS)
    assert all(said == meant for said, meant in pairs), pairs


def test_affectnet_seven_classes_drop_contempt(affectnet_root, expression7):
    test = affectnet.build(affectnet_config(affectnet_root), split="test", image_size=32, factors=expression7)
    assert len(test) == 14 and test.dropped["expression"] == 2
    assert test.classes["expression"] == list(EXPRESSION_8[:7])


def test_affectnet_npy_release(tmp_path, expression8):
    root = write_affectnet_npy(tmp_path, {"train_set": 2, "val_set": 1})
    for align in ("box", "landmarks"):
        config = affectnet_config(root, val_fraction=0.0, align=align)
        train = affectnet.build(config, split="train", image_size=28, factors=expression8)
        test = affectnet.build(config, split="test", image_size=28, factors=expression8)
        assert Counter(train.labels("expression").tolist()) == {k: 2 for k in range(8)}
        assert len(test) == 8 and train.dropped["listing: expression 9 (uncertain)"] == 2
        assert all(a == b for a, b in native_names(test, affectnet.EXPRESSIONS))


# --------------------------------------------------------------------------------------------------- CK+


@pytest.fixture(scope="module")
def ckplus_root(tmp_path_factory) -> Path:
    return write_ckplus(tmp_path_factory.mktemp("ckplus"))


def test_ckplus_frames_identities_and_subject_disjoint_folds(ckplus_root, expression8, identity):
    factors = {**expression8, **identity}
    config = ckplus.CKPlusConfig(root=ckplus_root, align="none", folds=3, fold=1)
    splits = {s: ckplus.build(config, split=s, image_size=32, factors=factors) for s in ("train", "val", "test")}
    subjects = {s: {Path(p).parts[1] for p in d.sources} for s, d in splits.items()}
    assert not subjects["train"] & subjects["val"] and not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    assert subjects["train"] | subjects["val"] | subjects["test"] == set(CK_SUBJECTS)
    # 3 last frames + the neutral first frame of each of the 6 labelled sequences
    assert sum(len(d) for d in splits.values()) == 6 * 4
    for d in splits.values():
        assert d.classes["identity"] == sorted(subjects["train"])  # the train folds' subjects only
        labels, names = labels_for_evaluation(d, "identity")  # held-out subjects appended
        for i, path in enumerate(d.sources):
            assert names[labels[i]] == Path(path).parts[1]
        assert (d.labels("identity") >= 0).all() == (d is splits["train"])
        assert all(a == b for a, b in native_names(d, ckplus.EMOTIONS))
        assert d.image(0).shape == (32, 32, 3)  # grayscale PNGs come back as RGB
    neutral = sum(int((d.labels("expression") == 0).sum()) for d in splits.values())
    assert neutral == 6


def test_ckplus_last_frames_and_no_neutral(ckplus_root, expression8):
    config = ckplus.CKPlusConfig(
        root=ckplus_root, align="none", folds=2, val_fold=False, last_frames=1, neutral_first=False
    )
    total = sum(len(ckplus.build(config, split=s, image_size=24, factors=expression8)) for s in ("train", "test"))
    assert total == 6
    with pytest.raises(DataError, match="split 'val' is empty"):
        ckplus.build(config, split="val", image_size=24, factors=expression8)


def test_ckplus_fold_must_exist(ckplus_root):
    with pytest.raises(ValueError, match="fold=3 must be below folds=3"):
        ckplus.CKPlusConfig(root=ckplus_root, folds=3, fold=3)


def test_ckplus_label_out_of_range_names_file_and_line(tmp_path, expression8):
    root = write_ckplus(tmp_path)
    bad = next((root / "Emotion").glob("S010/*/*_emotion.txt"))
    bad.write_text("   9.0000000e+00\n")
    with pytest.raises(DataError, match=rf"{bad}:1: label 9 is out of range: CK\+ emotion codes are 0-7"):
        ckplus.build(ckplus.CKPlusConfig(root=root, align="none"), split="train", image_size=24, factors=expression8)


# ------------------------------------------------------------------------------------------------ FER2013


def test_fer2013_usage_splits_and_pixels(tmp_path, expression7):
    root = write_fer2013(tmp_path)
    config = fer2013.FER2013Config(root=root)
    for split, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        d = fer2013.build(config, split=split, image_size=48, factors=expression7)
        assert len(d) == 7 * FER_USAGES[usage]
        assert all(a == b for a, b in native_names(d, fer2013.EMOTIONS))
    gray = np.asarray(face(0, 48, mode="L"))
    anger = fer2013.build(config, split="test", image_size=48, factors=expression7)
    i = list(anger.labels("expression")).index(EXPRESSION_8.index("anger"))
    assert np.array_equal(anger.image(i), np.repeat(gray[:, :, None], 3, axis=2))


def test_fer2013_with_eight_classes_says_contempt_is_missing(tmp_path, expression8):
    root = write_fer2013(tmp_path)
    with pytest.raises(DataError, match="contempt"):
        fer2013.build(fer2013.FER2013Config(root=root), split="train", image_size=48, factors=expression8)


@pytest.mark.parametrize(
    "row, message",
    [
        ("3,1 2 3", "has 2 fields, expected 3"),
        ("7,{px},Training", "emotion '7' is out of range: FER2013 labels are 0-6"),
        ("NULL,{px},Training", "field\\(s\\) emotion are NULL"),
        ("3,1 2 3,Training", "pixels must be 2304 integers 0-255 \\(48x48\\); found 3 values"),
        (
            "3," + " ".join(["1.5"] * 2304) + ",Training",
            "pixels must be 2304 integers 0-255 \\(48x48\\); found 2304 values, not all of them integers",
        ),
        (
            "3," + " ".join(["9" * 21] * 2304) + ",Training",
            "pixels must be 2304 integers 0-255 \\(48x48\\); found 2304 values, not all of them integers",
        ),  # past int64
        ("3,{px},Holdout", "Usage 'Holdout' is not one of"),
    ],
)
def test_fer2013_bad_rows(tmp_path, expression7, row, message):
    from factorlab.testing.layouts import fer_pixels

    root = write_fer2013(tmp_path, extra=[row.format(px=fer_pixels(1))])
    line = 1 + 7 * sum(FER_USAGES.values()) + 1
    with pytest.raises(DataError, match=rf"fer2013.csv:{line}: {message}"):
        fer2013.build(fer2013.FER2013Config(root=root), split="train", image_size=48, factors=expression7)
    skipping = fer2013.build(
        fer2013.FER2013Config(root=root, on_error="skip"), split="train", image_size=48, factors=expression7
    )
    assert len(skipping) == 21 and [s.where.endswith(f":{line}") for s in skipping.skipped] == [True]


# --------------------------------------------------------------------------------------------------- RAF-DB


def test_rafdb_one_based_labels_and_image_sets(tmp_path, expression7):
    root = write_rafdb(tmp_path)
    for images in ("aligned", "original"):
        config = rafdb.RAFDBConfig(root=root, images=images, val_fraction=0.3)
        train = rafdb.build(config, split="train", image_size=32, factors=expression7)
        val = rafdb.build(config, split="val", image_size=32, factors=expression7)
        test = rafdb.build(config, split="test", image_size=32, factors=expression7)
        assert len(train) + len(val) == 21 and len(test) == 14 and not set(train.sources) & set(val.sources)
        assert all(f"Image/{images}/" in s for s in test.sources)
        assert all(a == b for d in (train, test) for a, b in native_names(d, rafdb.EMOTIONS))


@pytest.mark.parametrize(
    "line, message",
    [
        ("train_00099.jpg", "has 1 field, expected 2"),
        ("train_00001.jpg 8", "label '8' is out of range: RAF-DB basic labels are 1-7"),
        ("train_00001.jpg 0", "label '0' is out of range"),
        ("train_00001.jpg NULL", "label is NULL"),
        ("train_00077.jpg 3", "image .*train_00077_aligned.jpg is missing"),
    ],
)
def test_rafdb_bad_lines(tmp_path, expression7, line, message):
    root = write_rafdb(tmp_path, extra=[line])
    with pytest.raises(DataError, match=rf"list_patition_label.txt:36: {message}"):
        rafdb.build(rafdb.RAFDBConfig(root=root), split="train", image_size=32, factors=expression7)


# -------------------------------------------------------------------------------------------- image folders


def test_imagefolder_expression_with_class_map(tmp_path, expression7):
    folders = {"Angry": 6, "Happiness": 1, "neutral": 0, "sad": 2, "surprise": 3, "fear": 4, "disgust": 5}
    root = write_imagefolder(tmp_path, folders, per_class=10)
    config = imagefolder.ImageFolderConfig(root=root, class_map={"Angry": "anger", "Happiness": "happy"})
    splits = {
        s: imagefolder.build(config, split=s, image_size=32, factors=expression7) for s in ("train", "val", "test")
    }
    sources = [set(d.sources) for d in splits.values()]
    assert sum(len(s) for s in sources) == 70 and not (
        sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2]
    )
    for d in splits.values():
        assert all(a == b for a, b in native_names(d, dict(enumerate(EXPRESSION_8))))


def test_imagefolder_identity_casia_tree_with_split_folders(tmp_path, identity):
    root = write_imagefolder(tmp_path, {"0000045": 1, "0000099": 2, "0000102": 3}, per_class=2, splits=True)
    config = imagefolder.ImageFolderConfig(root=root, factor="identity")
    for split in ("train", "val", "test"):
        d = imagefolder.build(config, split=split, image_size=32, factors=identity)
        assert d.classes["identity"] == ["0000045", "0000099", "0000102"] and len(d) == 6
        assert all(s.startswith(f"{split}/") for s in d.sources)
        assert [label_of(d.image(i)) for i in range(6)] == [1 + int(k) for k in d.labels("identity")]


def test_a_factor_the_data_set_does_not_label(tmp_path, identity):
    root = write_fer2013(tmp_path)
    with pytest.raises(DataError, match="'fer2013' has no 'identity' labels; it labels \\['expression'\\]"):
        fer2013.build(fer2013.FER2013Config(root=root), split="train", image_size=48, factors=identity)


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.SOURCE.name)
def test_missing_root(tmp_path, module, expression8):
    config = module.SOURCE.config(root=tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'} does not exist"):
        module.build(config, split="train", image_size=32, factors=expression8)


def test_missing_list_file(tmp_path, expression8):
    root = write_affectnet_csv(tmp_path, {"training.csv": 1})
    with pytest.raises(DataError, match="AffectNet list file .*validation.csv is missing"):
        affectnet.build(affectnet_config(root), split="test", image_size=32, factors=expression8)
    (root / "EmoLabel").mkdir()
    with pytest.raises(DataError, match="RAF-DB list file .*list_patition_label.txt is missing"):
        rafdb.build(rafdb.RAFDBConfig(root=root), split="test", image_size=32, factors=expression8)


def affectnet_with(tmp_path: Path, rows: list[list[str]]) -> Path:
    return write_affectnet_csv(tmp_path, {"training.csv": 1, "validation.csv": 1}, extra={"training.csv": rows})


BAD_ROWS = [
    (affectnet_row("1/x.jpg", 2)[:3], "has 3 fields, expected 9"),
    (["NULL", *affectnet_row("1/x.jpg", 2)[1:]], "field\\(s\\) subDirectory_filePath are NULL or empty"),
    ([*affectnet_row("1/train_0000.jpg", 2)[:6], "NULL", "0", "0"], "field\\(s\\) expression are NULL"),
    (affectnet_row("1/train_0000.jpg", 11), "expression 11 is out of range: AffectNet ids are 0-10"),
    (affectnet_row("1/train_0000.jpg", -1), "expression -1 is out of range"),
    (affectnet_row("9/absent.jpg", 2), "image .*Manually_Annotated_Images/9/absent.jpg is missing"),
]


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_affectnet_bad_rows_name_file_and_line(tmp_path, expression8, row, message):
    root = affectnet_with(tmp_path, [row])
    line = 1 + 8 + 3 + 1  # header, one image per id 0-7, ids 8-10, then the bad row
    with pytest.raises(DataError, match=rf"training.csv:{line}: {message}"):
        affectnet.build(affectnet_config(root), split="train", image_size=32, factors=expression8)
    config = affectnet_config(root, on_error="skip", val_fraction=0.0)
    skipping = affectnet.build(config, split="train", image_size=32, factors=expression8)
    assert [s.where.endswith(f"training.csv:{line}") for s in skipping.skipped] == [True]
    assert len(skipping) == 8


def test_null_landmarks_only_matter_when_aligning_by_them(tmp_path, expression8):
    row = affectnet_row("1/train_0000.jpg", 3)
    row[5] = "NULL"
    root = affectnet_with(tmp_path, [row])
    config = affectnet_config(root, val_fraction=0.0)
    assert len(affectnet.build(config, split="train", image_size=32, factors=expression8)) == 9
    with pytest.raises(DataError, match="field\\(s\\) facial_landmarks are NULL"):
        affectnet.build(affectnet_config(root, align="landmarks"), split="train", image_size=32, factors=expression8)


def test_bad_image_files(tmp_path, expression8):
    root = write_affectnet_csv(tmp_path, {"training.csv": 1, "validation.csv": 1})
    images = [root / "Manually_Annotated_Images" / f"{i % 3 + 1}/valid_{i:04d}.jpg" for i in range(3)]
    images[0].write_bytes(b"")
    images[1].write_bytes(images[1].read_bytes()[:300])  # truncated JPEG
    images[2].write_text("this is a text file, not an image\n")
    config = affectnet_config(root, on_error="skip")
    with pytest.raises(DataError, match=r"validation.csv:2: image .*valid_0000.jpg is empty"):
        affectnet.build(affectnet_config(root), split="test", image_size=32, factors=expression8)
    test = affectnet.build(config, split="test", image_size=32, factors=expression8)
    assert len(test) == 7 and "is empty" in test.skipped[0].reason  # empty files are caught while listing
    by_source = {s: i for i, s in enumerate(test.sources)}
    with pytest.raises(DataError, match=r"validation.csv:3: image .*valid_0001.jpg is corrupt or truncated"):
        test.image(by_source[str(images[1].relative_to(root))])
    with pytest.raises(DataError, match=r"validation.csv:4: .*valid_0002.jpg is not an image Pillow can read"):
        test.image(by_source[str(images[2].relative_to(root))])


def test_grayscale_and_palette_images_become_rgb(tmp_path):
    face(3, 32, mode="L").save(tmp_path / "gray.png")
    face(3, 32).convert("P").save(tmp_path / "palette.png")
    for name in ("gray.png", "palette.png"):
        image = read_image(tmp_path / name)
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and label_of(image) == 3


def test_empty_split(tmp_path, expression8):
    root = write_affectnet_csv(tmp_path, {"training.csv": 1, "validation.csv": 1})
    with pytest.raises(DataError, match="split 'val' is empty"):
        affectnet.build(affectnet_config(root, val_fraction=0.0), split="val", image_size=32, factors=expression8)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        affectnet.build(affectnet_config(root), split="dev", image_size=32, factors=expression8)


# ------------------------------------------------------------------------------------------------ alignment


def test_mtcnn_crops_the_face_in_a_real_photo():
    skimage_data = pytest.importorskip("skimage.data")
    torch.set_num_threads(1)
    photo = skimage_data.astronaut()  # a real 512x512 portrait shipped with scikit-image
    detector = MTCNNDetector()
    crop = FaceCropper("mtcnn", 160, margin=0.3).crop_batch([photo], [None])[0]
    assert crop.shape == (160, 160, 3)
    # The crop is centred on the face: detecting again finds one face filling most of it, near its middle.
    (x, y, w, h), points = detector.detect([crop])[0]
    assert abs(x + w / 2 - 80) < 16 and abs(y + h / 2 - 80) < 16
    assert 0.55 < w / 160 < 0.95
    assert points[0, 0] < points[1, 0]  # left eye left of the right eye: the crop is upright, not mirrored
    # Aligning by the 5 landmarks moves them where the fitted similarity says, and the eyes onto the template's.
    _, points = detector.detect([photo])[0]
    aligned = align_landmarks(photo, points, 160, margin=0.3)
    _, again = detector.detect([aligned])[0]
    template = (0.5 + (TEMPLATE_5 - 0.5) / 1.3) * 160
    fit = similarity_transform(points, template)
    assert np.abs(again - (points @ fit[:, :2].T + fit[:, 2])).max() < 4.0
    assert np.abs(again[:2] - template[:2]).max() < 4.0


def test_no_face_is_reported_not_cropped():
    blank = np.full((120, 120, 3), 128, dtype=np.uint8)
    assert FaceCropper("mtcnn", 64).crop_batch([blank], [None]) == ["no face found by MTCNN"]


@settings(deadline=None, max_examples=30)
@given(
    angle=st.floats(-np.pi, np.pi),
    scale=st.floats(0.2, 5.0),
    shift=st.tuples(st.floats(-100, 100), st.floats(-100, 100)),
)
def test_similarity_transform_recovers_a_known_similarity(angle, scale, shift):
    src = TEMPLATE_5 * 100
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rotation.T + np.array(shift)
    m = similarity_transform(src, dst)
    assert np.allclose(src @ m[:, :2].T + m[:, 2], dst, atol=1e-6 * (1 + scale * 100))


# ------------------------------------------------------------------------------------ sampling, augmentation


def test_balanced_epoch_order_evens_out_a_35_to_1_imbalance():
    labels = np.array([0] * 3500 + [1] * 100 + [2] * 400)
    drawn = np.concatenate([labels[epoch_order(labels, len(labels), seed=1, epoch=e, balanced=True)] for e in range(8)])
    freq = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(freq, 1 / 3, atol=0.02), freq
    again = labels[epoch_order(labels, len(labels), seed=1, epoch=0, balanced=True)]
    assert np.array_equal(drawn[: len(labels)], again)  # a pure function of (seed, epoch)
    assert not np.array_equal(again, labels[epoch_order(labels, len(labels), seed=1, epoch=1, balanced=True)])


def test_plain_epoch_order_is_a_seeded_permutation():
    order = epoch_order(None, 50, seed=3, epoch=2)
    assert sorted(order) == list(range(50))
    assert np.array_equal(order, epoch_order(None, 50, seed=3, epoch=2))


def test_augment_off_is_identity_and_flip_only_mirrors():
    images = torch.randint(0, 256, (6, 3, 20, 24), dtype=torch.uint8)
    assert torch.equal(FaceAugment()(images), images.float() / 255)
    out = FaceAugment(flip=True)(images, generator=torch.Generator().manual_seed(0))
    for k in range(6):
        assert torch.equal(out[k], images[k].float() / 255) or torch.equal(out[k], images[k].flip(-1).float() / 255)


@settings(deadline=None, max_examples=15)
@given(crop=st.floats(0.0, 0.3), jitter=st.floats(0.0, 0.5), flip=st.booleans(), seed=st.integers(0, 2**16))
def test_augment_keeps_shape_range_and_is_seeded(crop, jitter, flip, seed):
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    augment = FaceAugment(flip=flip, crop=crop, color_jitter=jitter)
    a = augment(images, generator=torch.Generator().manual_seed(seed))
    b = augment(images, generator=torch.Generator().manual_seed(seed))
    assert a.shape == (4, 3, 16, 16) and a.dtype == torch.float32 and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1


def test_augment_crop_zooms_in_and_jitter_changes_brightness():
    images = torch.zeros(1, 3, 32, 32)
    images[:, :, 8:24, 8:24] = 1.0  # a centred square
    zoomed = FaceAugment(crop=0.4)(images, generator=torch.Generator().manual_seed(3))
    assert zoomed.mean() > images.mean()  # cutting the border enlarges the centre
    flat = torch.full((64, 3, 8, 8), 0.5)
    jittered = FaceAugment(color_jitter=0.3)(flat, generator=torch.Generator().manual_seed(0))
    per_image = jittered.mean((1, 2, 3))
    assert per_image.std() > 0.02 and (per_image - 0.5).abs().max() <= 0.3 * 0.5 + 1e-6

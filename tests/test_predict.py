"""`factorlab predict`, the Python predictor, ONNX export and the model card, on real face photos.

The photos are scikit-image's astronaut and cameraman and faces of its LFW subset (as in test_weights.py).
Models: a tiny quickstart trained through the real CLI, and run folders written here with random weights
(the paper's Inception-ResNet-V1 at a small size, a model with a decoder).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import factorlab
from factorlab.errors import FactorlabError
from factorlab.model import build_model
from factorlab.predict import DETECT_SIDE, BadImage, Predictor, list_images, read_image
from factorlab.recipe import load_recipe
from factorlab.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "run.epochs=1",
    "run.max_steps_per_epoch=2",
    "data.identities=12",
    "data.samples_per_identity=24",
    "data.image_size=32",
    "run.batch_size=16",
    "run.device=cpu",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny quickstart model trained by `factorlab run`."""
    out = tmp_path_factory.mktemp("runs")
    result = run_cli("run", str(ROOT / "recipes" / "quickstart.toml"), *TINY, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return Path(re.search(r"run folder: (\S+)", result.stdout).group(1))


def random_run(folder: Path, recipe_path: Path, overrides: list[str]) -> Path:
    """A run folder holding a randomly initialised model: recipe.toml and checkpoints/best.pt, as a run writes them."""
    recipe = load_recipe(recipe_path, overrides)
    torch.manual_seed(0)
    model = build_model(recipe).eval()
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text(recipe.to_toml(), encoding="utf-8")
    (folder / "checkpoints").mkdir()
    torch.save({"model": model.state_dict(), "classes": model.classes, "epoch": 0}, folder / "checkpoints" / "best.pt")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, list[Path]]:
    """A folder of real face photos (some in a sub-folder) mixed with files that are not readable images."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    good = [root / "astronaut.jpg", root / "sub" / "camera.png"]
    Image.fromarray(data.astronaut()).save(good[0], quality=95)
    Image.fromarray(data.camera()).save(good[1])
    for i, face in enumerate(data.lfw_subset()[:3]):  # 25x25 grey face crops, floats in [0, 1]
        path = root / f"lfw{i}.png"
        Image.fromarray((face * 255).round().astype(np.uint8)).save(path)
        good.append(path)
    bad = {
        root / "empty.png": "empty file",
        root / "notes.jpg": "not an image",
        root / "truncated.jpg": "corrupt image",
        root / "sub" / "bomb.png": "more than the limit",
    }
    (root / "notes.jpg").write_text("shopping list: not a photo\n")
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(good[0].read_bytes()[:4000])
    Image.new("1", (12_000, 12_000)).save(root / "sub" / "bomb.png")  # 144 Mpx in a few kB: a decompression bomb
    (root / "readme.txt").write_text("not an image extension: a folder listing skips it\n")
    return {"root": [root], "good": sorted(good), "bad": sorted(bad), "reasons": bad}


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Reading inputs


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns, then read_image refuses
def test_bad_files_are_named_with_the_reason(photos) -> None:
    for path, reason in photos["reasons"].items():
        with pytest.raises(BadImage, match=reason) as info:
            read_image(path)
        assert str(path) in str(info.value)
    with pytest.raises(BadImage, match="no such file"):
        read_image(photos["root"][0] / "missing.jpg")
    image = read_image(photos["good"][0], max_pixels=512 * 512)  # exactly at the limit is allowed
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    with pytest.raises(BadImage, match="--max-pixels"):
        read_image(photos["good"][0], max_pixels=512 * 512 - 1)


def test_folders_are_listed_recursively_images_only(photos) -> None:
    listed = list(list_images(photos["root"]))
    assert sorted(listed) == sorted(photos["good"] + photos["bad"])
    assert not any(p.suffix == ".txt" for p in listed)
    stdin = io.StringIO("".join(f"{p}\n" for p in photos["good"][:2]) + "\n")
    assert list(list_images(["-"], stdin=stdin)) == photos["good"][:2]


# ---------------------------------------------------------------------------------------------
# The command


def test_predict_folder_predicts_the_good_files_and_names_the_bad_ones(run: Path, photos) -> None:
    result = run_cli("predict", str(run), str(photos["root"][0]), "--format", "jsonl")
    assert result.returncode == 3, result.stderr  # 3: some inputs were skipped
    records = jsonl(result.stdout)
    assert sorted(Path(r["path"]) for r in records) == photos["good"]
    for record in records:
        probabilities = record["predictions"]["expression"]["probabilities"]
        assert len(probabilities) == 8 and abs(sum(probabilities.values()) - 1) < 1e-5
        assert record["predictions"]["expression"]["class"] == max(probabilities, key=probabilities.get)
        assert record["face"] == 0 and record["box"] is None
    for path in photos["bad"]:
        assert f"skipped {path}" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    assert f"{len(photos['good'])} image(s) read" in result.stderr and "4 skipped" in result.stderr


def test_outputs_parse_and_agree_with_the_python_api(run: Path, photos, tmp_path: Path) -> None:
    good = [str(p) for p in photos["good"]]
    api = factorlab.load(run, device="cpu").predict(good, codes=True)
    assert [p.image for p in api] == list(range(len(good)))

    result = run_cli("predict", str(run), *good, "--codes", "--out", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    lines = jsonl((tmp_path / "out.jsonl").read_text())
    result = run_cli("predict", str(run), *good, "--format", "json")
    assert result.returncode == 0, result.stderr
    array = json.loads(result.stdout)
    result = run_cli("predict", str(run), *good, "--format", "csv", "--out", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    result = run_cli("predict", str(run), *good)  # the default: a table
    assert result.returncode == 0, result.stderr

    assert len(lines) == len(array) == len(rows) == len(api) == len(good)
    for path, prediction, line, item, row in zip(good, api, lines, array, rows, strict=True):
        expected = prediction.probabilities["expression"]
        assert line["path"] == item["path"] == row["path"] == path
        assert line["predictions"]["expression"]["class"] == item["predictions"]["expression"]["class"]
        assert row["expression"] == prediction.classes["expression"] == item["predictions"]["expression"]["class"]
        for name, p in expected.items():
            assert abs(line["predictions"]["expression"]["probabilities"][name] - p) < 1e-6
            assert abs(item["predictions"]["expression"]["probabilities"][name] - p) < 1e-6
            assert abs(float(row[f"expression:{name}"]) - p) < 1e-6
        for code, values in prediction.codes.items():
            np.testing.assert_allclose(line["codes"][code], values, atol=1e-6)
        table_line = next(line for line in result.stdout.splitlines() if path in line)
        assert f"{prediction.classes['expression']} {expected[prediction.classes['expression']]:.0%}" in table_line


def test_csv_rows_line_up_with_the_header_also_for_images_without_a_face(run: Path) -> None:
    from factorlab.commands.predict import CsvWriter
    from factorlab.predict import ImageResult

    predictor = factorlab.load(run, device="cpu")
    face = predictor.predict(torch.rand(3, predictor.image_size, predictor.image_size), codes=True)[0]
    stream = io.StringIO()
    writer = CsvWriter(stream, predictor, codes=True)
    writer.add(ImageResult("wall.png"))  # no face: empty cells
    writer.add(ImageResult("face.png", [face]))
    header, wall, row = csv.reader(io.StringIO(stream.getvalue()))
    assert len(header) == len(wall) == len(row)
    assert wall[0] == "wall.png" and set(wall[1:]) == {""}
    values = dict(zip(header, row, strict=True))
    assert values["expression"] == face.classes["expression"]
    for name, code in face.codes.items():
        assert [float(values[f"{name}[{i}]"]) for i in range(len(code))] == pytest.approx(code)


def test_paths_on_stdin(run: Path, photos) -> None:
    import subprocess
    import sys

    paths = "".join(f"{p}\n" for p in photos["good"][:2])
    result = subprocess.run(
        [sys.executable, "-m", "factorlab", "predict", str(run), "-", "--format", "jsonl"],
        input=paths, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [Path(r["path"]) for r in jsonl(result.stdout)] == photos["good"][:2]


@pytest.mark.parametrize("align", ["box", "mtcnn"])
def test_images_too_small_for_a_face_are_images_without_one(run: Path, tmp_path: Path, align: str) -> None:
    """MTCNN itself fails on images under its 20 px minimum face, and a 1 x 5000 strip shrank to 0 rows."""
    for name, (h, w) in {"dot": (1, 1), "small": (12, 12), "strip": (1, 5000)}.items():
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(tmp_path / f"{name}.png")
    result = run_cli("predict", str(run), str(tmp_path), "--align", align, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    assert [(Path(r["path"]).name, r["face"]) for r in jsonl(result.stdout)] == [
        ("dot.png", None), ("small.png", None), ("strip.png", None)
    ]  # fmt: skip
    assert "3 image(s) with no face" in result.stderr


def test_mtcnn_gives_every_face_with_its_box_and_reports_images_without_one(run: Path, tmp_path: Path) -> None:
    from skimage import data

    astronaut = data.astronaut()
    group = np.full((320, 700, 3), 128, np.uint8)  # two people side by side: the astronaut's head, twice
    head = astronaut[20:220, 150:310]
    group[60:260, 40:200], group[60:260, 420:580] = head, head
    Image.fromarray(group).save(tmp_path / "group.png")
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(tmp_path / "wall.png")

    result = run_cli("predict", str(run), str(tmp_path), "--align", "mtcnn", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    faces = [r for r in records if r["path"].endswith("group.png")]
    assert [r["face"] for r in faces] == [0, 1]
    centres = sorted(r["box"][0] + r["box"][2] / 2 for r in faces)
    assert 40 < centres[0] < 200 and 420 < centres[1] < 580, centres  # one box on each head
    assert all(r["detection"] > 0.9 and r["predictions"]["expression"]["class"] for r in faces)
    wall = [r for r in records if r["path"].endswith("wall.png")]
    assert wall == [{"path": str(tmp_path / "wall.png"), "face": None, "box": None, "predictions": None}]
    assert "1 image(s) with no face" in result.stderr

    predictor = factorlab.load(run, align="box")
    (largest,) = predictor.predict([tmp_path / "group.png"])
    assert largest.box == pytest.approx(faces[0]["box"], abs=0.01)
    # a photo larger than DETECT_SIDE is shrunk for MTCNN; the box still comes in the photo's own pixels
    big = np.array(Image.fromarray(group).resize((700 * 4, 320 * 4), Image.Resampling.BILINEAR))
    (on_big,) = predictor.predict(big)
    assert max(big.shape) > DETECT_SIDE
    assert on_big.box == pytest.approx([4 * v for v in largest.box], rel=0.1, abs=8)


def test_user_errors_exit_2_with_a_message(run: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for args, message in [
        ((str(tmp_path / "nope"), str(tmp_path)), "run folder not found"),
        ((str(run), str(tmp_path / "empty")), "no images in"),
        ((str(run), str(tmp_path / "missing.jpg")), "input not found"),
        ((str(run), str(tmp_path / "empty"), "--codes"), "--codes"),
        ((str(run), str(tmp_path / "empty"), "--batch-size", "0"), "--batch-size 0"),
        ((str(tmp_path / "model.onnx"), str(tmp_path / "empty")), "ONNX file not found"),
        ((str(run), str(run)), "is a run folder, not a folder of images"),
        ((str(run), str(tmp_path / "empty"), "--device", "gpu"), "--device gpu: unknown device"),
    ]:
        result = run_cli("predict", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------
# The Python API


def test_every_input_kind_gives_the_same_prediction(run: Path, photos) -> None:
    predictor = factorlab.load(run, device="cpu")
    size = predictor.image_size
    path = photos["good"][0]
    array = read_image(path)
    crop = np.array(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))
    tensor = torch.from_numpy(crop).permute(2, 0, 1).float() / 255
    by_kind = {
        "path": predictor.predict(path),
        "str": predictor.predict(str(path)),
        "PIL": predictor.predict(Image.open(path)),
        "array": predictor.predict(array),
        "crop array": predictor.predict(crop),
        "tensor": predictor.predict(tensor),
        "batch tensor": predictor.predict(torch.stack([tensor, tensor])),
    }
    reference = by_kind["path"][0].probabilities["expression"]
    for kind, predictions in by_kind.items():
        assert len(predictions) == (2 if kind == "batch tensor" else 1), kind
        for p in predictions[kind == "batch tensor" :]:
            assert p.probabilities["expression"] == pytest.approx(reference, abs=1e-6), kind
    codes = predictor.encode(tensor[None])
    with torch.inference_mode():
        expected = predictor.backend.net.encode(tensor[None])
    assert set(codes) == set(expected) == set(predictor.code_names)
    for name in codes:
        torch.testing.assert_close(codes[name], expected[name])
    assert "expression" in repr(predictor)
    with pytest.raises(FactorlabError, match="uint8"):
        predictor.predict(array.astype(np.float32))
    with pytest.raises(FactorlabError, match="float"):
        predictor.predict(torch.zeros(3, size, size, dtype=torch.uint8))


def test_predictions_do_not_depend_on_the_batch(run: Path, photos) -> None:
    one = Predictor.from_run(run, device="cpu", batch_size=1).predict(photos["good"])
    many = Predictor.from_run(run, device="cpu", batch_size=64).predict(photos["good"])
    for a, b in zip(one, many, strict=True):
        assert a.classes == b.classes
        assert a.probabilities["expression"] == pytest.approx(b.probabilities["expression"], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# ONNX export


def face_batch(size: int) -> torch.Tensor:
    """Real faces as the model sees them: skimage's astronaut and cameraman cropped by MTCNN, and LFW faces."""
    from skimage import data

    predictor_faces = [data.astronaut(), np.stack([data.camera()] * 3, -1)]
    predictor_faces += [np.stack([(f * 255).round().astype(np.uint8)] * 3, -1) for f in data.lfw_subset()[:6]]
    from factorlab.data.align import MTCNNDetector, center_crop, crop_box

    detector = MTCNNDetector()
    crops = []
    for image in predictor_faces:
        hits = detector.detect_all([image]) if image.shape[0] > 100 else [[]]
        crops.append(crop_box(image, hits[0][0][0], size, 0.2) if hits[0] else center_crop(image, size))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


def onnx_outputs(path: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": images.numpy()}), strict=True))


def check_parity(rundir: Path, path: Path, *, decoder: bool = False) -> dict:
    import onnx

    from factorlab.rundir import load_run

    recipe, model = load_run(rundir)
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["factorlab"])
    assert meta["image_size"] == recipe.data.image_size and meta["classes"] == model.classes
    images = face_batch(recipe.data.image_size)
    with torch.no_grad():
        expected = model.net(images)
    for n in (1, len(images)):  # the batch size is dynamic
        got = onnx_outputs(path, images[:n])
        for link in model.net.head_links:
            diff = np.abs(got[f"logits/{link.factor}/{link.code}"] - expected["logits"][link.key][:n].numpy()).max()
            assert diff <= 1e-4, (link.key, diff)
        for code, value in expected["codes"].items():
            assert np.abs(got[f"code/{code}"] - value[:n].numpy()).max() <= 1e-4
        if decoder:
            assert np.abs(got["reconstruction"] - expected["reconstruction"][:n].numpy()).max() <= 1e-4
        else:
            assert "reconstruction" not in got
    return meta


def test_export_runs_in_onnx_runtime_with_the_same_logits(run: Path, photos, tmp_path: Path) -> None:
    path = tmp_path / "quickstart.onnx"
    result = run_cli("export", str(run), "--out", str(path))
    assert result.returncode == 0, result.stderr
    meta = check_parity(run, path)
    assert meta["heads"] == [{"factor": "expression", "code": "exp", "output": "logits/expression/exp"}]
    assert meta["classes"]["expression"][:2] == ["neutral", "happy"]

    # the exported file predicts what the run folder predicts, through the same command
    good = [str(p) for p in photos["good"]]
    from_onnx = run_cli("predict", str(path), *good, "--format", "jsonl")
    from_run = run_cli("predict", str(run), *good, "--format", "jsonl")
    assert from_onnx.returncode == from_run.returncode == 0, from_onnx.stderr + from_run.stderr
    for a, b in zip(jsonl(from_onnx.stdout), jsonl(from_run.stdout), strict=True):
        pa, pb = a["predictions"]["expression"], b["predictions"]["expression"]
        assert pa["class"] == pb["class"]
        assert pa["probabilities"] == pytest.approx(pb["probabilities"], abs=1e-5)


def test_onnx_files_not_written_by_factorlab_are_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(FactorlabError, match="without factorlab metadata"):
        factorlab.load(tmp_path / "plain.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(FactorlabError, match="not an ONNX model"):
        factorlab.load(tmp_path / "text.onnx")


@pytest.mark.slow
def test_export_of_the_paper_architecture(tmp_path: Path) -> None:
    # Inception-ResNet-V1 cut at repeat_2, two conv4 branches, linear head; random weights, 80 px to stay quick
    rundir = random_run(tmp_path / "paper", ROOT / "recipes" / "expression.toml",
                        ["encoder.weights=none", "data.image_size=80"])  # fmt: skip
    path = tmp_path / "paper.onnx"
    from factorlab.export import export_onnx

    export_onnx(rundir, path)
    check_parity(rundir, path)


def test_export_with_the_decoder(tmp_path: Path) -> None:
    rundir = random_run(tmp_path / "ablation", ROOT / "recipes" / "synth" / "ablation.toml",
                        ["loss.beta_rec=1.0", "data.image_size=32", "data.identities=12"])  # fmt: skip
    result = run_cli("export", str(rundir), "--out", str(tmp_path / "swap.onnx"), "--decoder")
    assert result.returncode == 0, result.stderr
    assert check_parity(rundir, tmp_path / "swap.onnx", decoder=True)["reconstruction"] == "reconstruction"
    no_decoder = random_run(tmp_path / "nodec", ROOT / "recipes" / "quickstart.toml", ["data.image_size=32"])
    for args, message in [
        ((str(no_decoder), "--out", str(tmp_path / "x.onnx"), "--decoder"), "has no decoder"),
        ((str(no_decoder), "--out", str(tmp_path / "x.txt")), "ending in .onnx"),
    ]:
        result = run_cli("export", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------
# The model card


def test_model_card_names_the_checkpoint_of_its_numbers(run: Path) -> None:
    card = (run / "MODEL_CARD.md").read_text()
    summary = json.loads((run / "summary.json").read_text())
    checkpoint = summary["checkpoint"]
    assert f"checkpoint `{checkpoint['name']}` (`{checkpoint['file']}`, epoch {checkpoint['epoch']}" in card
    accuracy = summary["splits"]["test"]["head/expression/exp/accuracy"]
    assert f"| head/expression/exp/accuracy | {accuracy:.2%} |" in card
    for heading in ("What it predicts", "Recipe", "Data and splits", "Test metrics", "Leakage", "Intended use"):
        assert f"## {heading}" in card
    assert "neutral, happy" in card and "SynthFaces" in card and "factorlab eval" in card

    result = run_cli("eval", str(run), "--max-samples", "64", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    card = (run / "MODEL_CARD.md").read_text()
    evaluation = json.loads((run / "eval.json").read_text())
    assert "From `eval.json` (test split), checkpoint" in card
    assert f"`{evaluation['checkpoint_info']['file']}`" in card
    probe = evaluation["probes"][0]
    assert f"| {probe['factor']} | {probe['code']} | {probe['probe']} | {probe['accuracy']:.2%} |" in card


def test_model_card_of_an_unfinished_run_says_so(tmp_path: Path) -> None:
    from factorlab.modelcard import model_card

    rundir = random_run(tmp_path / "unfinished", ROOT / "recipes" / "quickstart.toml", ["data.image_size=32"])
    card = model_card(rundir)
    assert "No test metrics in `summary.json`: the run has not finished." in card
    assert f"Run `factorlab eval {rundir}` for post-hoc leakage probes" in card


def test_detect_keeps_the_largest_of_the_faces_detect_all_finds() -> None:
    from skimage import data

    from factorlab.data.align import FaceCropper, MTCNNDetector, crop_box

    astronaut = data.astronaut()
    group = np.full((300, 600, 3), 128, np.uint8)
    group[40:240, 20:180] = astronaut[20:220, 150:310]
    group[80:180, 400:480] = np.array(Image.fromarray(astronaut[20:220, 150:310]).resize((80, 100)))  # smaller
    detector = MTCNNDetector()
    (faces,) = detector.detect_all([group])
    assert len(faces) == 2 and faces[0][0][2] * faces[0][0][3] > faces[1][0][2] * faces[1][0][3]
    (box, landmarks), nothing = detector.detect([group, np.zeros((100, 100, 3), np.uint8)])
    assert box == faces[0][0] and np.array_equal(landmarks, faces[0][1]) and nothing is None
    cropped = FaceCropper("mtcnn", 64, margin=0.2).crop_batch([group], [None])[0]
    np.testing.assert_array_equal(cropped, crop_box(group, box, 64, 0.2))

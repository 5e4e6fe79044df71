"""`factorlab prepare`: the cache it writes, its report, reading it back, and resuming after an interruption."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from factorlab.commands.prepare import add_prepare_command, source_of
from factorlab.data import affectnet, ckplus, imagefolder
from factorlab.data.cache import open_cache
from factorlab.data.prepare import prepare
from factorlab.errors import DataError, RecipeError, UnknownNameError
from factorlab.factors import Factor
from factorlab.testing.layouts import (
    affectnet_row,
    face,
    label_of,
    write_affectnet_csv,
    write_ckplus,
    write_imagefolder,
)

EXPRESSION_8 = Factor("expression", ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"))


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` (relative name -> bytes)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def messy_affectnet(tmp_path_factory) -> Path:
    """AffectNet (CSV release) with one NULL row and one truncated image among 24 + 16 good ones."""
    bad_row = ["NULL", *affectnet_row("1/x.jpg", 2)[1:]]
    root = write_affectnet_csv(
        tmp_path_factory.mktemp("affectnet"),
        {"training.csv": 3, "validation.csv": 2},
        extra={"training.csv": [bad_row]},
    )
    broken = root / "Manually_Annotated_Images" / "2" / "train_0001.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    return root


def config(root: Path, **kw) -> affectnet.AffectNetConfig:
    return affectnet.AffectNetConfig(root=root, on_error="skip", **kw)


def test_prepare_writes_shards_index_and_a_report_of_what_it_skipped(messy_affectnet, tmp_path):
    out = tmp_path / "cache"
    result = prepare(source_of("affectnet"), config(messy_affectnet), out, image_size=32, shard_size=7)
    assert result.images == 24 - 1 + 16 and result.skipped == 2 and result.shards == 6
    assert sorted(p.name for p in (out / "shards").glob("*.npy")) == [f"{k:05d}.npy" for k in range(6)]
    report = (out / "report.txt").read_text()
    assert "39 images written, 2 skipped, 3 dropped" in report
    assert "training.csv:29\tfield(s) subDirectory_filePath are NULL or empty" in report
    assert "training.csv:3\timage" in report and "train_0001.jpg is corrupt or truncated" in report
    assert "expression 9 (uncertain): 1" in report
    cache = open_cache(out, dataset="affectnet", image_size=32)
    assert len(cache.table) == 39 and {s.where.split("/")[-1] for s in cache.skipped} == {
        "training.csv:29",
        "training.csv:3",
    }


def test_cache_round_trip_is_byte_equal_to_decoding(messy_affectnet, tmp_path):
    out = tmp_path / "cache"
    prepare(source_of("affectnet"), config(messy_affectnet, align="landmarks"), out, image_size=40, shard_size=5)
    factors = {"expression": EXPRESSION_8}
    for split in ("train", "val", "test"):
        direct = affectnet.build(
            config(messy_affectnet, align="landmarks"), split=split, image_size=40, factors=factors
        )
        cached = affectnet.build(
            config(messy_affectnet, align="landmarks", cache=out), split=split, image_size=40, factors=factors
        )
        readable = [i for i, s in enumerate(direct.sources) if not s.endswith("2/train_0001.jpg")]
        assert cached.sources == [direct.sources[i] for i in readable]
        assert np.array_equal(cached.labels("expression"), direct.labels("expression")[readable])
        for k, i in enumerate(readable):
            assert np.array_equal(cached.image(k), direct.image(i))
        batch = cached.__getitems__(list(range(len(cached)))[::-1])  # the batched path DataLoader uses
        assert all(
            np.array_equal(b["image"].permute(1, 2, 0).numpy(), cached.image(len(cached) - 1 - k))
            for k, b in enumerate(batch)
        )
        assert [b["expression"] for b in batch] == cached.labels("expression")[::-1].tolist()


class Interrupt(Exception):
    pass


def test_resume_after_an_interruption_gives_the_same_bytes(messy_affectnet, tmp_path):
    source, shard_size = source_of("affectnet"), 4
    reference = tmp_path / "reference"
    prepare(source, config(messy_affectnet), reference, image_size=32, shard_size=shard_size, workers=2)

    calls = []

    def stop_after_three_shards(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 4:  # the first call reports the start
            raise Interrupt

    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        prepare(
            source,
            config(messy_affectnet),
            out,
            image_size=32,
            shard_size=shard_size,
            on_progress=stop_after_three_shards,
        )
    assert len(list((out / "shards").glob("*.npy"))) == 3 and not (out / "index.json").exists()
    with pytest.raises(DataError, match="incomplete .*rerun the same command to resume"):
        open_cache(out, dataset="affectnet", image_size=32)
    (out / "shards" / ".00003.npy.k1ll3d.tmp").write_bytes(b"half a shard")  # what a kill mid-write leaves

    progress = []
    prepare(
        source,
        config(messy_affectnet),
        out,
        image_size=32,
        shard_size=shard_size,
        on_progress=lambda d, t: progress.append(d),
    )
    assert progress[0] == 3 * shard_size  # resumed after the three finished shards
    assert tree(out) == tree(reference)


def test_a_killed_prepare_process_resumes(messy_affectnet, tmp_path):
    out, reference = tmp_path / "killed", tmp_path / "reference"
    prepare(source_of("affectnet"), config(messy_affectnet), reference, image_size=32, shard_size=2)
    script = (
        "import sys, time\n"
        "from factorlab.commands.prepare import source_of\nfrom factorlab.data.prepare import prepare\n"
        "from factorlab.data.affectnet import AffectNetConfig\n"
        "def slow(done, total):\n"
        "    print(done, flush=True); time.sleep(0.3)\n"
        f"prepare(source_of('affectnet'), AffectNetConfig(root={str(messy_affectnet)!r}, on_error='skip'), "
        f"{str(out)!r}, image_size=32, shard_size=2, on_progress=slow)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    for _ in range(4):  # wait until three shards are reported written
        assert child.stdout.readline(), "prepare exited early"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert not (out / "index.json").exists() and len(list((out / "shards").glob("*.json"))) >= 3
    prepare(source_of("affectnet"), config(messy_affectnet), out, image_size=32, shard_size=2)
    assert tree(out) == tree(reference)


def test_prepare_refuses_a_folder_prepared_otherwise(messy_affectnet, tmp_path):
    out = tmp_path / "cache"
    prepare(source_of("affectnet"), config(messy_affectnet), out, image_size=32, shard_size=50)
    with pytest.raises(DataError, match="prepared with other settings"):
        prepare(source_of("affectnet"), config(messy_affectnet), out, image_size=48, shard_size=50)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="exists and is not a factorlab cache"):
        prepare(source_of("affectnet"), config(messy_affectnet), tmp_path / "other", image_size=32)
    with pytest.raises(DataError, match="holds 32x32 images but the recipe asks for 64x64"):
        affectnet.build(
            config(messy_affectnet, cache=out), split="test", image_size=64, factors={"expression": EXPRESSION_8}
        )
    with pytest.raises(DataError, match="holds data set 'affectnet', not 'ckplus'"):
        ckplus.build(ckplus.CKPlusConfig(root=tmp_path, cache=out), split="test", image_size=32, factors={})


def test_mtcnn_prepare_keeps_real_faces_and_lists_the_rest(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    root = write_imagefolder(tmp_path / "faces", {"happy": 1}, per_class=1)  # a cartoon: MTCNN finds no face
    from PIL import Image

    Image.fromarray(skimage_data.astronaut()).save(root / "happy" / "astronaut.jpg", quality=92)
    out = tmp_path / "cache"
    result = prepare(
        source_of("imagefolder"),
        imagefolder.ImageFolderConfig(root=root, align="mtcnn", on_error="skip"),
        out,
        image_size=64,
    )
    assert result.images == 1 and result.skipped == 1
    assert "happy/000.png\tno face found by MTCNN" in (out / "report.txt").read_text()
    cache = open_cache(out, dataset="imagefolder", image_size=64)
    assert cache.table.sources == ["happy/astronaut.jpg"] and cache.image(0).shape == (64, 64, 3)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="factorlab prepare")
    handler = add_prepare_command(parser)
    return handler(parser.parse_args(argv))


def test_cli_prepares_a_ckplus_tree(tmp_path):
    root = write_ckplus(tmp_path / "ck")
    out = tmp_path / "cache"
    argv = [
        "ckplus",
        "--root",
        str(root),
        "--out",
        str(out),
        "--image-size",
        "32",
        "--workers",
        "1",
        "align=none",
        "folds=3",
    ]
    assert run_cli(argv) == 0
    factors = {"expression": EXPRESSION_8, "identity": Factor("identity", None)}
    direct = ckplus.CKPlusConfig(root=root, align="none", folds=3)
    for split in ("train", "val", "test"):
        cached = ckplus.build(direct.model_copy(update={"cache": out}), split=split, image_size=32, factors=factors)
        fresh = ckplus.build(direct, split=split, image_size=32, factors=factors)
        assert cached.sources == fresh.sources and cached.classes == fresh.classes
        assert all(label_of(cached.image(i)) == label_of(fresh.image(i)) for i in range(len(cached)))
    assert run_cli(argv) == 0  # a complete cache: nothing to redo


def test_cli_errors_name_the_problem(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown data set 'affectnett'. Did you mean 'affectnet'?"):
        run_cli(["affectnett", "--root", str(tmp_path)])
    with pytest.raises(
        DataError, match="data set 'synthfaces' .* cannot be prepared: its registration names no `source`"
    ):
        run_cli(["synthfaces", "--root", str(tmp_path)])
    with pytest.raises(
        RecipeError, match="options of data set 'ckplus' are not valid:\n  folds: .*greater than or equal to 2"
    ):
        run_cli(["ckplus", "--root", str(tmp_path), "folds=1"])
    with pytest.raises(RecipeError, match="  colour: Extra inputs are not permitted"):
        run_cli(["rafdb", "--root", str(tmp_path), "colour=1"])


def test_grayscale_frames_are_cached_as_rgb(tmp_path):
    root = tmp_path / "folder"
    (root / "sad").mkdir(parents=True)
    face(2, 40, mode="L").save(root / "sad" / "gray.png")
    out = tmp_path / "cache"
    prepare(source_of("imagefolder"), imagefolder.ImageFolderConfig(root=root), out, image_size=24)
    image = open_cache(out, dataset="imagefolder", image_size=24).image(0)
    assert image.shape == (24, 24, 3) and label_of(image) == 2
    assert np.array_equal(image[..., 0], image[..., 1])


def test_a_cache_prepared_with_other_options_is_refused(tmp_path):
    root = write_ckplus(tmp_path / "ck")
    out = tmp_path / "cache"
    prepared = ckplus.CKPlusConfig(root=root, align="none", last_frames=3)
    prepare(source_of("ckplus"), prepared, out, image_size=32, shard_size=8)
    same = prepared.model_copy(update={"cache": out, "fold": 1})  # choosing another fold is fine
    assert len(ckplus.build(same, split="train", image_size=32, factors={})) > 0
    other = prepared.model_copy(update={"cache": out, "last_frames": 1})
    with pytest.raises(DataError, match="last_frames = 3 in the cache, 1 in the recipe"):
        ckplus.build(other, split="train", image_size=32, factors={})


def test_prepare_refuses_a_shard_size_below_one(tmp_path):
    root = write_ckplus(tmp_path / "ck")
    with pytest.raises(RecipeError, match="--shard-size 0"):
        prepare(source_of("ckplus"), ckplus.CKPlusConfig(root=root, align="none"), tmp_path / "c", shard_size=0)
    assert not (tmp_path / "c").exists(), "nothing is written before the options are checked"


def test_a_source_that_cannot_reach_worker_processes_is_a_user_error(tmp_path, messy_affectnet):
    from dataclasses import replace

    local = replace(source_of("affectnet"), scan=lambda config: source_of("affectnet").scan(config))
    with pytest.raises(DataError, match="cannot be sent to worker processes.*--workers 1"):
        prepare(local, config(messy_affectnet), tmp_path / "out", image_size=32, shard_size=2, workers=2)


def _damage_cache(out: Path, damage: str) -> None:
    import json

    shard_json = out / "shards" / "00000.json"
    if damage == "empty shard":  # an interrupted copy
        (out / "shards" / "00000.npy").write_bytes(b"")
    elif damage == "index a list":
        (out / "index.json").write_text("[]")
    elif damage == "shard metadata a list":
        shard_json.write_text("[]")
    elif damage == "label past the classes":
        meta = json.loads(shard_json.read_text())
        meta["labels"]["expression"][0] = 999
        shard_json.write_text(json.dumps(meta))
    elif damage == "shard of the wrong shape":
        np.save(out / "shards" / "00000.npy", np.zeros((10, 5), np.uint8))
    elif damage == "text as shard":
        (out / "shards" / "00000.npy").write_text("not numpy")


@pytest.mark.parametrize(
    "damage, words",
    [
        ("empty shard", r"00000\.npy cannot be read"),
        ("index a list", r"index\.json or a shards/\*\.json is not what `factorlab prepare` writes"),
        ("shard metadata a list", r"is not what `factorlab prepare` writes"),
        ("label past the classes", r"expression label 999 with 8 classes"),
        ("shard of the wrong shape", r"00000\.npy holds uint8 \(10, 5\), not uint8 \(\d+, 32, 32, 3\)"),
        ("text as shard", r"00000\.npy cannot be read"),
    ],
)
def test_a_damaged_cache_is_a_data_error_naming_the_file(messy_affectnet, tmp_path, damage, words):
    out = tmp_path / "cache"
    prepare(source_of("affectnet"), config(messy_affectnet), out, image_size=32, shard_size=7)
    _damage_cache(out, damage)
    with pytest.raises(DataError, match=words) as err:
        cache = open_cache(out, dataset="affectnet", image_size=32)
        cache.images(np.arange(3))
    assert "rerun prepare" in str(err.value) and "allow_pickle" not in str(err.value)

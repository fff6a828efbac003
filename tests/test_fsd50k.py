"""The FSD50K data layer on a synthetic tree: splits, targets, families and every bad-data error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fsdtree import FsdTree
from guesser.errors import DataError
from guesser.labels import FAMILIES_5, FAMILIES_6, default_label_space
from trainer.fsd50k import Fsd50k, family_targets, multi_hot

GT = "FSD50K.ground_truth"


@pytest.fixture
def editable(fsd_tree: FsdTree, tmp_path: Path) -> Path:
    """A root whose CSVs may be edited: ground truth copied, audio folders linked to the session tree."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(fsd_tree.root / GT, root / GT)
    for d in ("FSD50K.dev_audio", "FSD50K.eval_audio"):
        (root / d).symlink_to(fsd_tree.root / d, target_is_directory=True)
    return root


def rewrite(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


def open_error(root: Path) -> str:
    with pytest.raises(DataError) as e:
        Fsd50k.open(root)
    msg = str(e.value)
    assert "\n" not in msg, "one line"
    return msg


# ---------------------------------------------------------------- reading


def test_splits_follow_the_csvs(fsd_tree: FsdTree, fsd_root: Path):
    ds = Fsd50k.open(fsd_root)
    assert list(ds.splits) == ["train", "val", "eval"]
    for name in ("train", "val", "eval"):
        want = fsd_tree.split(name)
        got = ds.splits[name]
        assert [c.fname for c in got.clips] == [c.fname for c in want]  # CSV order, split column honoured
        assert [c.path for c in got.clips] == [c.path for c in want]  # .wav/.flac/.ogg all found
        assert got.missing == []
    assert len(ds.vocabulary) == 200


def test_labels_and_multi_hot_targets(fsd_tree: FsdTree, fsd_root: Path):
    ds = Fsd50k.open(fsd_root)
    names = ds.vocabulary.names
    for split in ("train", "val", "eval"):
        y = ds.targets(split)
        want = fsd_tree.split(split)
        assert y.shape == (len(want), 200) and y.dtype == np.uint8
        for row, clip, fc in zip(y, ds.splits[split].clips, want):
            assert [names[i] for i in clip.labels] == list(fc.labels)  # listed order kept (leaf first)
            assert {names[i] for i in np.flatnonzero(row)} == set(fc.labels)


def test_multi_hot():
    y = multi_hot([(0, 3), (), (199,)], 200)
    assert y.sum() == 3 and y[0, 0] == y[0, 3] == y[2, 199] == 1


def test_own_ontology_is_used_when_the_root_has_one(editable: Path):
    # A root ontology where Bark hangs directly under Music (and nothing else).
    import json

    nodes = json.loads((Path(__file__).resolve().parents[1] / "guesser/data/ontology.json").read_text())
    bark = next(n["id"] for n in nodes if n["name"] == "Bark")
    music = next(n["id"] for n in nodes if n["name"] == "Music")
    for n in nodes:
        n["child_ids"] = [c for c in n.get("child_ids", []) if c != bark]
        if n["id"] == music:
            n["child_ids"].append(bark)
    (editable / "ontology.json").write_text(json.dumps(nodes))
    ds = Fsd50k.open(editable)
    v = ds.vocabulary
    assert [v.names[a] for a in ds.labels.ancestors[v.index["Bark"]]] == ["Music"]


def test_missing_audio_file_is_listed_not_raised(make_fsd_tree):
    tree = make_fsd_tree(bad=True, per_class=(1, 1, 1))
    ds = Fsd50k.open(tree.root)
    missing = [f for f, why in tree.bad.items() if why == "audio file not found"]
    assert ds.splits["val"].missing == missing
    clip = next(c for c in ds.splits["val"].clips if c.fname == missing[0])
    assert clip.path is None
    # files that exist but cannot be decoded are the cache's business, not the data layer's
    assert ds.splits["train"].missing == [] and ds.splits["eval"].missing == []


def test_a_clip_in_two_formats_resolves_the_same_way_everywhere(editable: Path, fsd_tree: FsdTree):
    ogg = next(c for c in fsd_tree.split("train") if c.path.suffix == ".ogg")
    dev = editable / "FSD50K.dev_audio"
    dev.unlink()
    dev.mkdir()
    for c in fsd_tree.clips:
        if c.split != "eval":
            (dev / c.path.name).symlink_to(c.path)
    (dev / f"{ogg.fname}.wav").symlink_to(ogg.path)  # same clip, also as .wav
    (dev / "README.txt").write_text("not audio")
    clip = next(c for c in Fsd50k.open(editable).splits["train"].clips if c.fname == ogg.fname)
    assert clip.path == dev / f"{ogg.fname}.wav"  # .wav first, as FSD50K ships it


# ---------------------------------------------------------------- families


def test_family_targets_split_mass_over_a_clips_families():
    space = default_label_space()
    v = space.vocabulary

    def y(*labels: str) -> np.ndarray:
        return multi_hot([tuple(v.index[n] for n in labels)], 200)

    def fam(row: np.ndarray, families) -> dict[str, float]:
        return {families[i]: float(p) for i, p in enumerate(row) if p}

    assert fam(family_targets(y("Bark", "Dog", "Animal"), space)[0], FAMILIES_6) == {"Animal": 1.0}
    # a dog barking over piano: two families, mass split evenly
    assert fam(family_targets(y("Bark", "Piano", "Music"), space)[0], FAMILIES_6) == {"Animal": 0.5, "Music": 0.5}
    # one label under two families (Bell: Music and Sounds of things)
    assert fam(family_targets(y("Bell"), space)[0], FAMILIES_6) == {"Music": 0.5, "Sounds of things": 0.5}
    # a Knock's ambiguous root is dropped: its source is known
    assert fam(family_targets(y("Knock", "Door"), space)[0], FAMILIES_6) == {"Sounds of things": 1.0}
    # only-ambiguous labels: a family of their own in 6, no family (zero row: dropped) in 5
    assert fam(family_targets(y("Tearing"), space)[0], FAMILIES_6) == {"Source-ambiguous sounds": 1.0}
    assert family_targets(y("Tearing"), space, "5").sum() == 0
    assert fam(family_targets(y("Tearing", "Piano"), space, "5")[0], FAMILIES_5) == {"Music": 1.0}
    t = family_targets(np.vstack([y("Bark"), y("Rain", "Engine", "Speech")]), space)
    assert t.shape == (2, 6) and t.dtype == np.float32
    np.testing.assert_allclose(t.sum(axis=1), 1.0)


def test_family_targets_of_the_fixture(fsd_tree: FsdTree, fsd_root: Path):
    ds = Fsd50k.open(fsd_root)
    t = family_targets(ds.targets("train"), ds.labels)
    expected = {"piano": {"Music"}, "rain": {"Natural sounds"}, "bark": {"Animal"}, "engine": {"Sounds of things"},
                "mix": {"Animal", "Music"}}
    for row, fc in zip(t, fsd_tree.split("train")):
        got = {FAMILIES_6[i] for i in np.flatnonzero(row)}
        assert got == expected[fc.cls]
        np.testing.assert_allclose(row[row > 0], 1 / len(got))


# ---------------------------------------------------------------- bad data: one line naming file and row


def test_missing_root(tmp_path: Path):
    assert "data root not found" in open_error(tmp_path / "nowhere")


def test_not_an_fsd50k_root(tmp_path: Path):
    assert f"no {GT}/ folder" in open_error(tmp_path)


@pytest.mark.parametrize("folder", ["FSD50K.dev_audio", "FSD50K.eval_audio"])
def test_missing_audio_folder(editable: Path, folder: str):
    (editable / folder).unlink()
    msg = open_error(editable)
    assert str(editable) in msg and f"audio folder {folder}/ not found" in msg


@pytest.mark.parametrize("name", ["vocabulary.csv", "dev.csv", "eval.csv"])
def test_missing_ground_truth_file(editable: Path, name: str):
    (editable / GT / name).unlink()
    msg = open_error(editable)
    assert str(editable / GT / name) in msg and "not found" in msg


def test_missing_column(editable: Path):
    dev = editable / GT / "dev.csv"
    rewrite(dev, lambda ls: [",".join(ls[0].split(",")[:3])] + [ln.rsplit(",", 1)[0] for ln in ls[1:]])
    msg = open_error(editable)
    assert f"{dev}: missing column(s) split (header is fname,labels,mids)" == msg


def test_header_with_bom_and_spaces_is_accepted(editable: Path):
    dev = editable / GT / "dev.csv"
    rewrite(dev, lambda ls: ["\ufeff" + ls[0].replace(",", ", ")] + ls[1:])
    assert len(Fsd50k.open(editable).splits["train"]) > 0


@pytest.mark.parametrize(
    "edit, line, message",
    [
        (lambda ls: ls[:3] + [ls[3] + ",extra"] + ls[4:], 4, "expected 4 fields, got 5"),
        (lambda ls: ls[:2] + ['1,"Bark"'] + ls[3:], 3, "expected 4 fields, got 2"),
        (lambda ls: ls[:4] + ['1,"Bark,Dog,/m/x,train'] + ls[5:], 5, "malformed CSV"),
        (lambda ls: ls[:2] + ["1,Barking,/m/x,train"] + ls[3:], 3, "unknown label 'Barking' (not in vocabulary.csv)"),
        (lambda ls: ls[:2] + ['1,"Bark, Nope",/m/x,train'] + ls[3:], 3, "unknown label 'Nope'"),
        (lambda ls: ls[:2] + ["1,,,train"] + ls[3:], 3, "clip 1 has no labels"),
        (lambda ls: ls[:2] + ["1,Bark,/m/x,test"] + ls[3:], 3, "split must be one of train/val, got 'test'"),
        (lambda ls: ls[:2] + [",Bark,/m/x,train"] + ls[3:], 3, "empty fname"),
        (lambda ls: ls[:6] + [ls[2]] + ls[6:], 7, "duplicate fname " + "{fname2}"),
    ],
)
def test_bad_dev_rows(editable: Path, edit, line: int, message: str):
    dev = editable / GT / "dev.csv"
    fname2 = dev.read_text().splitlines()[2].split(",")[0]
    rewrite(dev, edit)
    msg = open_error(editable)
    assert msg.startswith(f"{dev}:{line}: ")
    assert message.format(fname2=fname2) in msg


def test_bad_eval_row(editable: Path):
    ev = editable / GT / "eval.csv"
    rewrite(ev, lambda ls: ls[:3] + ["77,Woof,/m/x"] + ls[4:])
    assert open_error(editable) == f"{ev}:4: unknown label 'Woof' (not in vocabulary.csv)"


def test_binary_csv(editable: Path):
    dev = editable / GT / "dev.csv"
    dev.write_bytes(b"fname,labels,mids,split\n1,Bark,/m/x,train\n\xff\xfe\x00garbage\n")
    msg = open_error(editable)
    assert msg.startswith(f"{dev}:") and "not a UTF-8 text file" in msg


def test_bad_vocabulary(editable: Path):
    voc = editable / GT / "vocabulary.csv"
    rewrite(voc, lambda ls: ls[:10] + ["10,Bark"] + ls[11:])
    assert open_error(editable).startswith(f"{voc}:11: expected 'idx,label,mid'")

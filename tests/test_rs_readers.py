"""Readers of the remote-sensing caption and scene datasets: generated fixtures and the real data."""
from __future__ import annotations

import json
import warnings
from collections import Counter

import pytest
from test_rs_fixtures import RSICD_FAKE_CLASSES, make_fake_remote_sensing, write_image

from domains.remote_sensing import (
    RSICD_CLASSES,
    UCM_CLASSES,
    ImageReadError,
    RemoteSensingDataWarning,
    class_prompts,
    read_caption_lines,
    read_coco_captions,
    read_karpathy_captions,
    read_rsicd_class_lists,
    read_rsitmd_captions,
    read_scene_folder,
    read_sydney_captions,
    read_ucm_captions,
    read_ucm_scenes,
    readable_class_name,
    ucm_caption_image_path,
)


@pytest.fixture()
def fake(tmp_path):
    return make_fake_remote_sensing(tmp_path)


# ------------------------------------------------------------------ Karpathy layout
def test_karpathy_reads_records_with_splits_labels_and_images(fake):
    labels = read_rsicd_class_lists(fake / "rsicd" / "classes")
    rs = read_karpathy_captions(fake / "rsicd" / "dataset_rsicd.json", labels=labels)
    assert len(rs) == 24 and rs.name == "rsicd"
    assert all(r.image is not None and r.image.endswith(r.image_id) for r in rs)
    assert all(len(r.captions) == 5 for r in rs)
    assert rs[0].captions[0] == "a airport number 0 seen from above view 0 ."
    assert Counter(r.split for r in rs) == {"train": 12, "test": 8, "val": 4}
    assert set(rs.class_names()) == set(RSICD_FAKE_CLASSES)
    numeric = [r for r in rs if r.image_id[0].isdigit()]
    assert numeric and all(r.label == "playfields" for r in numeric)
    assert len(rs.split("train")) == 12 and len(rs.split("train", "val")) == 16
    with pytest.raises(KeyError, match="no records in split"):
        rs.split("restval")


def test_karpathy_malformed_json_names_file_and_position(tmp_path):
    bad = tmp_path / "dataset_rsicd.json"
    bad.write_text('{"images": [{"filename": "a.jpg", "sentences": [}]}')
    with pytest.raises(ValueError, match=r"dataset_rsicd\.json: not valid JSON \(line 1, column"):
        read_karpathy_captions(bad, image_dir=None)
    bad.write_text('[1, 2, 3]')
    with pytest.raises(ValueError, match="expected a JSON object with an 'images' list"):
        read_karpathy_captions(bad, image_dir=None)
    with pytest.raises(FileNotFoundError, match="Karpathy-style"):
        read_karpathy_captions(tmp_path / "absent.json")


def _karpathy(tmp_path, entries):
    path = tmp_path / "caps.json"
    path.write_text(json.dumps({"images": entries}))
    return path


def test_karpathy_bad_records_raise_or_skip_with_report(tmp_path):
    img_dir = tmp_path / "images"
    write_image(img_dir / "ok.jpg", 1)
    s = [{"raw": "a caption ."}]
    entries = [
        {"filename": "ok.jpg", "split": "train", "sentences": s},
        {"split": "train", "sentences": s},                                    # no filename
        {"filename": "nocap.jpg", "split": "train", "sentences": []},          # no captions
        {"filename": "missing.jpg", "split": "test", "sentences": s},          # image absent
        {"filename": "ok.jpg", "split": "train", "sentences": s},              # duplicate
    ]  # fmt: skip
    path = _karpathy(tmp_path, entries)
    with pytest.raises(ValueError, match=r"caps\.json: images\[1\]: missing or empty 'filename'"):
        read_karpathy_captions(path, img_dir)
    with pytest.warns(RemoteSensingDataWarning, match="skipped 4 record"):
        rs = read_karpathy_captions(path, img_dir, on_error="skip")
    assert [r.image_id for r in rs] == ["ok.jpg"]
    reasons = [s.reason for s in rs.report.skipped]
    assert any("not found" in r and "missing.jpg" in r for r in reasons)
    assert any("listed twice" in r for r in reasons)
    assert any("at least one sentence" in r for r in reasons)
    # a missing image alone raises FileNotFoundError naming the record and the expected path
    path2 = _karpathy(tmp_path, [entries[0], entries[3]])
    with pytest.raises(FileNotFoundError, match=r"images\[1\] \(missing\.jpg\): image file .*missing\.jpg not found"):
        read_karpathy_captions(path2, img_dir)
    # optional images: kept caption-only and reported, no error
    rs = read_karpathy_captions(path2, img_dir, require_images=False)
    assert [r.has_image for r in rs] == [True, False]
    assert rs.report.missing_images[0][1] == "missing.jpg"


def test_karpathy_tokens_fallback_and_no_image_dir(tmp_path):
    path = _karpathy(tmp_path, [{"filename": "x.jpg", "sentences": [{"tokens": ["two", "ships"]}, "  a  port  "]}])
    rs = read_karpathy_captions(path, image_dir=None)
    assert rs[0].captions == ["two ships", "a port"] and rs[0].image is None and rs[0].split is None
    assert not rs.report


# ------------------------------------------------------------------ COCO layout, UCM, Sydney, RSITMD
def test_ucm_caption_id_mapping():
    assert UCM_CLASSES == tuple(sorted(UCM_CLASSES)) and len(UCM_CLASSES) == 21
    cls, path = ucm_caption_image_path("1.tif", "/d")
    assert cls == "agricultural" and path.as_posix() == "/d/agricultural/agricultural00.jpg"
    cls, path = ucm_caption_image_path("100.tif", "/d")
    assert cls == "agricultural" and path.name == "agricultural99.jpg"
    cls, path = ucm_caption_image_path("101.tif", "/d")
    assert cls == "airplane" and path.name == "airplane00.jpg"
    cls, path = ucm_caption_image_path("2100.tif", "/d")
    assert cls == "tenniscourt" and path.name == "tenniscourt99.jpg"
    assert ucm_caption_image_path("0.tif", "/d") is None and ucm_caption_image_path("2101.tif", "/d") is None
    assert ucm_caption_image_path("abc.tif", "/d") is None


def test_ucm_captions_pair_present_images_and_report_absent(fake):
    rs = read_ucm_captions(fake / "ucm")
    assert len(rs) == 6 and rs.name == "ucm"
    present = rs.with_images()
    assert sorted(r.image_id for r in present) == ["101.tif", "102.tif", "103.tif", "104.tif"]
    assert all(r.label == "airplane" and r.image.endswith(f"airplane0{int(r.image_id[:-4]) - 101}.jpg")
               for r in present)
    absent = rs.caption_only()
    assert sorted(r.image_id for r in absent) == ["501.tif", "502.tif"] and {r.label for r in absent} == {"chaparral"}
    assert len(rs.report.missing_images) == 2 and "chaparral00.jpg" in rs.report.summary()
    assert {r.split for r in rs} == {"train", "val", "test"}


def test_coco_bad_annotation_and_malformed_file(tmp_path):
    data = {"images": [{"id": 1, "file_name": "1.tif"}, {"id": 2, "file_name": "2.tif"}],
            "annotations": [{"image_id": 1, "caption": "ok ."}, {"image_id": 9, "caption": "orphan ."},
                            {"image_id": 2, "caption": ""}]}  # fmt: skip
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"c\.json: annotations\[1\] \(image_id 9\): refers to no entry"):
        read_coco_captions(path)
    with pytest.warns(RemoteSensingDataWarning):
        rs = read_coco_captions(path, on_error="skip")
    assert [r.image_id for r in rs] == ["1.tif"]  # image 2 has no usable caption -> skipped too
    assert len(rs.report.skipped) == 3
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="expected a COCO caption file"):
        read_coco_captions(path)


def test_sydney_and_rsitmd_are_caption_only(fake, tmp_path):
    syd = read_sydney_captions(fake / "sydney")
    assert len(syd) == 3 and not syd.with_images() and {r.split for r in syd} == {"train"}
    rt = read_rsitmd_captions(fake / "rsitmd")
    assert [(r.image_id, len(r.captions), r.split) for r in rt] == [
        ("port_3.tif", 2, "test"), ("boat_1.tif", 5, "train"), ("beach_2.tif", 5, "train")]
    assert rt[1].label == "boat"
    # empty caption lines are left out and reported; wrong line counts are an error
    caps, names = tmp_path / "caps.txt", tmp_path / "names.txt"
    names.write_text("a_1.tif\nb_2.tif\n")
    caps.write_text("one\n\nthree\nfour\n")
    with pytest.warns(RemoteSensingDataWarning, match="empty caption line"):
        rs = read_caption_lines(caps, names)
    assert [r.captions for r in rs] == [["one"], ["three", "four"]]
    caps.write_text("one\ntwo\nthree\n")
    with pytest.raises(ValueError, match="3 caption lines do not fit 2 names"):
        read_caption_lines(caps, names)


# ------------------------------------------------------------------ scenes and class names
def test_scene_folder_and_rsicd_class_lists(fake, tmp_path):
    sc = read_ucm_scenes(fake / "ucm")
    assert len(sc) == 12 and sc.class_names() == ["airplane", "beach", "harbor"]
    assert sc[0].image_id == "airplane/airplane00.jpg" and sc[0].label == "airplane"
    (fake / "ucm" / "images" / "empty").mkdir()
    with pytest.raises(ValueError, match="class 'empty'"):
        read_scene_folder(fake / "ucm" / "images")
    with pytest.raises(FileNotFoundError, match="class folder"):
        read_scene_folder(fake / "ucm" / "images", classes=["airplane", "nosuch"])
    # verify=True finds a corrupt file
    (fake / "ucm" / "images" / "beach" / "beach99.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(ImageReadError, match="beach99.jpg"):
        read_scene_folder(fake / "ucm" / "images", classes=["beach"], verify=True)
    with pytest.warns(RemoteSensingDataWarning):
        ok = read_scene_folder(fake / "ucm" / "images", classes=["beach"], verify=True, on_error="skip")
    assert len(ok) == 4
    # class lists: an image in two lists is an error naming both
    d = tmp_path / "classes"
    d.mkdir()
    (d / "A.txt").write_text("x.jpg\ny.jpg\n")
    (d / "B.txt").write_text("y.jpg\n")
    with pytest.raises(ValueError, match=r"B\.txt: line 1 \(y\.jpg\): already listed in class 'A'"):
        read_rsicd_class_lists(d)


def test_readable_class_names_and_prompts():
    assert readable_class_name("baseballfield") == "baseball field"
    assert readable_class_name("BaseballField") == "baseball field"
    assert readable_class_name("baseballdiamond") == "baseball diamond"
    assert readable_class_name("StorageTanks") == "storage tanks"
    assert readable_class_name("playfields") == "playing fields"
    assert readable_class_name("RiverDelta") == "river delta"  # rule for unknown names
    assert readable_class_name("solar_farm") == "solar farm"
    assert readable_class_name("Center", {"Center": "city centre"}) == "city centre"
    assert all(readable_class_name(c) == readable_class_name(c).lower() for c in RSICD_CLASSES + UCM_CLASSES)
    prompts = class_prompts(["Airport", "BareLand"], ("a photo of {}.", "{} from above"))
    assert prompts == ["a photo of airport.", "airport from above", "a photo of bare land.", "bare land from above"]


# ------------------------------------------------------------------ real data
def test_real_rsicd(shared_data):
    root = shared_data / "remote_sensing" / "rsicd"
    labels = read_rsicd_class_lists(root / "classes")
    assert len(labels) == 10921 and len(set(labels.values())) == 31 and set(labels.values()) == set(RSICD_CLASSES)
    rs = read_karpathy_captions(root / "dataset_rsicd.json", labels=labels)
    assert len(rs) == 10921 and not rs.report
    assert Counter(r.split for r in rs) == {"train": 7862, "val": 1966, "test": 1093}
    assert all(len(r.captions) == 5 and r.label is not None for r in rs)
    test = rs.split("test")
    assert len(test.class_names()) == 31


def test_real_ucm_sydney_rsitmd(shared_data):
    root = shared_data / "remote_sensing"
    sc = read_ucm_scenes(root / "ucm")
    assert len(sc) == 1600 and len(sc.class_names()) == 16
    caps = read_ucm_captions(root / "ucm")
    assert len(caps) == 2100 and len(caps.with_images()) == 1600 and len(caps.report.missing_images) == 500
    absent = {"chaparral", "denseresidential", "forest", "freeway", "golfcourse"}
    assert {r.label for r in caps.caption_only()} == absent
    # the mapping pairs images with captions of their own class
    assert all(r.image.split("/")[-2] == r.label for r in caps.with_images())
    syd = read_sydney_captions(root / "sydney")
    assert len(syd) == 555 and sum(len(r.captions) for r in syd) == 2775
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemoteSensingDataWarning)  # 20 empty lines in the release
        rt = read_rsitmd_captions(root / "rsitmd")
    assert len(rt) > 4700 and all(r.captions for r in rt)
    assert sum(1 for s in rt.report.skipped if s.reason == "empty caption line") == 20


def test_rsicd_and_ucm_captions_are_torchgeo_datasets_of_image_caption_samples(fake):
    """One sample per caption of a present image, ``{"image", "caption"}`` as torchgeo's SkyScript."""
    import torch
    from torchgeo.datasets import NonGeoDataset

    from domains.remote_sensing import RSICD, UCMCaptions

    rs = fake  # the folder holding rsicd/ and ucm/
    train = RSICD(rs, split="train")
    assert isinstance(train, NonGeoDataset)
    n_train_images = sum(1 for r in train.records)
    assert len(train) == 5 * n_train_images and n_train_images == 12  # 4 classes x 3 train images
    sample = train[0]
    assert set(sample) == {"image", "caption"} and sample["image"].shape == (3, 48, 48)
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["caption"] == train.records[0].captions[0]
    with pytest.raises(IndexError):
        train[len(train)]
    flipped = RSICD(rs, split="test", transforms=lambda s: {**s, "image": s["image"].flip(-1)})
    assert torch.equal(flipped[0]["image"], RSICD(rs, split="test")[0]["image"].flip(-1))
    ucm = UCMCaptions(rs)
    assert len(ucm) == 5 * 4  # ids 101-104 have images (airplane); the chaparral ids have none

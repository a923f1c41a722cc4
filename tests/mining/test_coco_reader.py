"""The COCO reader (msgspec, pieces of the annotations array) against Python's json as reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soebench.errors import InputError
from soebench.mining import json_pieces
from soebench.mining.coco import load_captions, load_instances
from tests.mining.fixtures import Obj, write_coco

OBJECTS = [
    [Obj((5, 5, 8, 8), "cup"), Obj((40, 40, 10, 10), "car", crowd=True)],
    [Obj((10, 10, 25, 25), "cup", segmentation={"size": [120, 160], "counts": "PPYo10"}), Obj((60, 60, 15, 5), "sports ball")],
    [Obj((30, 30, 20, 26), "person")],
    [Obj((90, 20, 23, 23), "cup"), Obj((9, 20, 23, 23), "car"), Obj((50, 20, 23, 23), "cup")],
]


@pytest.fixture(params=[1 << 20, 48], ids=["one-piece", "many-pieces"])
def chunk(request, monkeypatch):
    """Whole arrays in one piece, or a cut at (nearly) every element boundary."""
    monkeypatch.setattr(json_pieces, "CHUNK_BYTES", request.param)
    return request.param


def _reference(data: dict) -> dict:
    """What the reader must give, computed with json's objects."""
    anns = data["annotations"]
    images = sorted(data["images"], key=lambda im: im["id"])
    licenses = {lic["id"]: lic["name"] for lic in data.get("licenses", [])}
    return {
        "ann_id": [a["id"] for a in anns],
        "image_id": [a["image_id"] for a in anns],
        "category_id": [a["category_id"] for a in anns],
        "bbox": [a["bbox"] for a in anns],
        "area": [a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns],
        "iscrowd": [int(a.get("iscrowd", 0)) for a in anns],
        "segmentations": [a.get("segmentation") for a in anns],
        "image_ids": [im["id"] for im in images],
        "image_files": [im["file_name"] for im in images],
        "image_width": [im["width"] for im in images],
        "image_licenses": [licenses.get(im.get("license")) for im in images],
        "categories": {c["id"]: c["name"] for c in data["categories"]},
    }


def _assert_reads_like_json(path):
    ref = _reference(json.loads(path.read_bytes()))
    got = load_instances(path)
    for name in ("ann_id", "image_id", "category_id", "iscrowd", "image_ids", "image_width"):
        assert getattr(got, name).tolist() == ref[name], name
    assert got.bbox.tolist() == ref["bbox"] and got.area.tolist() == ref["area"]
    assert got.image_files == ref["image_files"] and got.image_licenses == ref["image_licenses"]
    assert got.categories == ref["categories"]
    assert [got.segmentation(r) for r in range(len(got))] == ref["segmentations"]
    got.close()


def _rewrite(path, data, **dumps):
    path.write_text(json.dumps(data, **dumps))


@pytest.mark.parametrize(
    "layout",
    ["as-written", "indented", "segmentation-last", "compact", "annotations-first", "images-last", "crlf-indented"],
)
def test_reader_equals_json(tmp_path, chunk, layout):
    fx = write_coco(tmp_path / "coco", OBJECTS, indent=2 if layout == "indented" else None, seg_last=layout == "segmentation-last")
    data = json.loads(fx.annotations.read_text())
    if layout == "compact":
        _rewrite(fx.annotations, data, separators=(",", ":"))
    elif layout == "annotations-first":
        _rewrite(fx.annotations, {"annotations": data["annotations"], **{k: v for k, v in data.items() if k != "annotations"}})
    elif layout == "images-last":
        order = ["info", "licenses", "annotations", "categories", "images"]
        _rewrite(fx.annotations, {k: data[k] for k in order})
    elif layout == "crlf-indented":
        fx.annotations.write_bytes(json.dumps(data, indent="\t").replace("\n", "\r\n").encode())
    _assert_reads_like_json(fx.annotations)


def test_cuts_inside_strings_and_nested_values_are_not_taken(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    data = json.loads(fx.annotations.read_text())
    data["info"]["description"] = 'looks like a key: "annotations": [ and a cut }, { inside'
    for k, ann in enumerate(data["annotations"]):
        ann["note"] = "a string with }, { and }] and }, {" * (k + 1)
        ann["extra"] = {"nested": [{"k": 1}, {"k": 2}, {"k": [{"x": "}, {"}]}]}
    data["annotations"][2] = {"extra": [{"a": 1}, {"b": 2}], **data["annotations"][2]}  # a different key order
    _rewrite(fx.annotations, data)
    _assert_reads_like_json(fx.annotations)


def test_files_that_cannot_be_mapped_are_read(tmp_path, chunk, monkeypatch):
    def no_map(*args, **kwargs):
        raise OSError("mmap not supported here")

    fx = write_coco(tmp_path / "coco", OBJECTS)
    monkeypatch.setattr(json_pieces.mmap, "mmap", no_map)
    _assert_reads_like_json(fx.annotations)


def test_byte_order_mark_and_empty_annotation_list(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    fx.annotations.write_bytes(b"\xef\xbb\xbf" + fx.annotations.read_bytes())
    _assert_reads_like_json(fx.annotations)
    data = json.loads(fx.annotations.read_bytes())
    data["annotations"] = []
    _rewrite(fx.annotations, data, indent=1)
    got = load_instances(fx.annotations)
    assert len(got) == 0 and got.bbox.shape == (0, 4) and len(got.image_ids) == 4


def test_missing_fields_get_coco_defaults(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    data = json.loads(fx.annotations.read_text())
    for ann in data["annotations"][::2]:
        del ann["area"], ann["iscrowd"], ann["segmentation"]
    data["annotations"][1]["iscrowd"] = True
    _rewrite(fx.annotations, data)
    _assert_reads_like_json(fx.annotations)


# --- damage anywhere is an error with json's position -------------------------------------------


def _json_error(raw: bytes) -> json.JSONDecodeError | None:
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        return exc
    return None


def _check_damage(path, raw: bytes):
    """Our error for ``raw`` names what json.loads names; where json accepts, we either accept
    or give an InputError (msgspec is stricter: NaN, missing required fields)."""
    path.write_bytes(raw)
    ref = _json_error(raw)
    if ref is None:
        try:
            load_instances(path).close()
        except InputError:
            pass
        return
    with pytest.raises(InputError) as err:
        load_instances(path)
    msg = str(err.value)
    assert str(path) in msg
    assert f"{ref.msg} at line {ref.lineno} column {ref.colno} (char {ref.pos})" in msg, (raw[max(0, ref.pos - 20) : ref.pos + 20], msg)


@pytest.mark.parametrize("indent", [None, 1])
def test_every_truncation_is_an_error_at_jsons_position(tmp_path, chunk, indent):
    fx = write_coco(tmp_path / "coco", OBJECTS, indent=indent)
    raw = fx.annotations.read_bytes()
    for cut in range(1, len(raw) - 1, max(1, len(raw) // 90)):
        _check_damage(fx.annotations, raw[:cut])


def test_damage_anywhere_is_an_error_at_jsons_position(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    raw = fx.annotations.read_bytes()
    rng = np.random.default_rng(0)
    for at in sorted(rng.choice(len(raw), 60, replace=False)):
        for junk in (b"x", b"}", b",", b"]]"):
            _check_damage(fx.annotations, raw[:at] + junk + raw[at:])


def test_damage_in_an_object_no_filter_keeps_names_that_annotation(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    text = fx.annotations.read_text()
    at = text.index('"segmentation": [[', text.index('"segmentation": [[') + 1)  # annotation 102 (crowd)
    at += len('"segmentation": [[') + 2
    fx.annotations.write_text(text[:at] + "#" + text[at:])
    with pytest.raises(InputError) as err:
        load_instances(fx.annotations)
    assert "in annotations[1] (annotation id 102)" in str(err.value)


def test_wrong_types_name_the_annotation_and_field(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    data = json.loads(fx.annotations.read_text())
    data["annotations"][6]["bbox"] = [1.0, 2.0, 3.0]
    _rewrite(fx.annotations, data)
    with pytest.raises(InputError, match=r"annotations\[6\]\.bbox: Expected `array` of length 4 \(annotation id 107\)"):
        load_instances(fx.annotations)
    data["annotations"][6]["bbox"] = [1.0, 2.0, 3.0, 4.0]
    del data["images"][2]["width"]
    _rewrite(fx.annotations, data)
    with pytest.raises(InputError, match=r"images\[2\]: Object missing required field `width`"):
        load_instances(fx.annotations)
    data["images"][2]["width"] = 160
    data["images"][3]["id"] = 1
    _rewrite(fx.annotations, data)
    with pytest.raises(InputError, match="image id 1 appears twice"):
        load_instances(fx.annotations)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not valid JSON: Expecting value at line 1 column 1 (char 0)"),
        (b"[1, 2]", "the top level: Expected `object`, got `array`"),
        (b'{"images": [], "categories": []}', "no 'annotations' list"),
        (b'{"annotations": [], "categories": []}', "no 'images' list"),
        (b'{"annotations": []} x', "Extra data at line 1 column 21 (char 20)"),
        (b'{"annotations": [] "images": []}', "Expecting ',' delimiter at line 1 column 20 (char 19)"),
        (b'{"annotations": [], "images": [], "categories": [], "x": "\xff"}', "not UTF-8 text: byte 58 (line 1 column 59)"),
    ],
)
def test_not_a_coco_file(tmp_path, content, expected):
    path = tmp_path / "instances.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_instances(path)
    assert expected in str(err.value) and str(path) in str(err.value)


# --- captions -----------------------------------------------------------------------------------


def test_captions_equal_json_and_keep_only_the_images_asked(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    data = json.loads(fx.captions.read_text())
    data["annotations"].insert(3, {"id": 999, "caption": "caf\u00e9 \u201cquoted\u201d }, {", "image_id": 2, "extra": [{}, {}]})
    fx.captions.write_text(json.dumps(data, ensure_ascii=False))
    expected: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        expected.setdefault(ann["image_id"], []).append(ann["caption"])
    assert load_captions(fx.captions) == expected
    assert load_captions(fx.captions, [2, 4, 77]) == {2: expected[2], 4: expected[4]}


def test_damaged_captions_name_the_caption(tmp_path, chunk):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    text = fx.captions.read_text()
    at = text.index('"id": 31, ') + len('"id": 31, ')
    fx.captions.write_text(text[:at] + "?" + text[at:])
    ref = _json_error(fx.captions.read_bytes())
    with pytest.raises(InputError) as err:
        load_captions(fx.captions)
    assert f"{ref.msg} at line {ref.lineno} column {ref.colno} (char {ref.pos})" in str(err.value)
    assert "(annotation id 31)" in str(err.value)

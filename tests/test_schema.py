import pytest

from auditor_lite.data.schema import (
    action_from_iou,
    normalize_action,
    normalize_mask_type,
    vid_from_uid,
)


@pytest.mark.parametrize("name,expected", [
    ("gt_mask_path", "perfect"), ("perfect", "perfect"), ("cutout", "cutout"), ("cut", "cutout"),
    ("erode", "erode"), ("dilate", "dilate"), ("merge", "merge"), ("null_masks", "null"),
    ("empty", "null"), ("full_neg_masks", "full_neg"), ("neg", "full_neg"), ("Full_Neg", "full_neg"),
])
def test_normalize_mask_type(name, expected):
    assert normalize_mask_type(name) == expected


def test_normalize_mask_type_unknown():
    with pytest.raises(ValueError, match="unknown mask type 'blur'"):
        normalize_mask_type("blur")


@pytest.mark.parametrize("iou,mtype,expected", [
    (1.0, "perfect", "accept"), (0.3, "perfect", "accept"), (0.0, "full_neg", "reject"),
    (0.5, "null", "reject"), (0.0, "cutout", "reject"), (0.6, "erode", "major revision"),
    (0.6001, "erode", "minor revision"), (0.9, "dilate", "minor revision"),
    (0.9001, "dilate", "accept"), (0.0, "merge", "reject"), (0.45, "merge", "major revision"),
])
def test_action_from_iou(iou, mtype, expected):
    assert action_from_iou(iou, mtype) == expected


def test_normalize_action():
    assert normalize_action("Minor Revision") == "minor revision"
    assert normalize_action("major") == "major revision"
    with pytest.raises(ValueError):
        normalize_action("maybe")


def test_vid_from_uid():
    assert vid_from_uid("--KCIeTv6PM_14000_24000_cat_1") == "--KCIeTv6PM_14000_24000"
    assert vid_from_uid("null_abc_1000_2000_dog_0") == "abc_1000_2000"

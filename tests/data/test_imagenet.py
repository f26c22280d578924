"""ImageNet metadata shipped with the package: class ids, CLIP names and templates, the R / A subsets, groups."""

import json
import re

import pytest
import torch

from hf_counterfactual.data.imagenet import (
    class_groups,
    class_subset,
    grouped_logits,
    imagenet_class_names,
    imagenet_templates,
    imagenet_wnids,
    objectnet_class_groups,
)


def test_wnids_names_and_templates():
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000
    assert wnids == sorted(wnids) and all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    # class ids every ImageNet user knows: 0 tench n01440764, 6 stingray, 999 toilet tissue n15075141
    assert (wnids[0], wnids[6], wnids[999]) == ("n01440764", "n01498041", "n15075141")
    names = imagenet_class_names()
    assert len(names) == 1000 and (names[0], names[6], names[999]) == ("tench", "stingray", "toilet paper")
    templates = imagenet_templates()
    assert len(templates) == 80 and all(t.count("{}") == 1 for t in templates)
    assert templates[0] == "a bad photo of a {}."


@pytest.mark.parametrize(
    "subset, first",
    [
        ("imagenet_r", [1, 2, 4]),  # goldfish, great white shark, hammerhead
        ("imagenet_a", [6, 11, 13]),  # stingray, goldfinch, junco
    ],
)
def test_class_subsets_index_imagenet_classes_in_sorted_wnid_order(subset, first):
    ids = class_subset(subset)
    assert len(ids) == len(set(ids)) == 200 and ids == sorted(ids)
    assert ids[:3] == first
    assert class_groups(subset, 1000) == [[i] for i in ids]


def test_class_groups_from_a_json_file_and_errors(tmp_path):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps([[3], [0, 2]]))
    assert class_groups(str(path), 4) == [[3], [0, 2]]
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        class_groups(str(path), 3)
    path.write_text(json.dumps({"a": [1]}))
    with pytest.raises(ValueError, match="JSON list of non-empty lists"):
        class_groups(str(path), 4)
    path.write_text(json.dumps([[1], []]))
    with pytest.raises(ValueError, match="JSON list of non-empty lists"):
        class_groups(str(path), 4)
    with pytest.raises(ValueError, match="neither a known subset"):
        class_groups("imagenet_q", 1000)
    with pytest.raises(ValueError, match="unknown class subset"):
        class_subset("objectnet")


def test_objectnet_class_groups_from_the_release_mappings(tmp_path):
    """A 3-class release: ids go 2012 devkit line -> torch class id; classes ordered by folder name."""
    (tmp_path / "folder_to_objectnet_label.json").write_text(
        json.dumps({"zebra_folder": "Zebra", "mug": "Mug", "banana": "Banana"})
    )
    (tmp_path / "objectnet_to_imagenet_1k.json").write_text(
        json.dumps({"Mug": "coffee mug; cup", "Banana": "banana", "Zebra": "zebra"})
    )
    (tmp_path / "imagenet_to_label_2012_v2").write_text("banana\ncup\ncoffee mug\nzebra\n")
    # devkit ids 0..3 are torch classes 954, 968, 504, 340
    (tmp_path / "pytorch_to_imagenet_2012_id.json").write_text(
        json.dumps({"954": 0, "968": 1, "504": 2, "340": 3})
    )
    assert objectnet_class_groups(str(tmp_path)) == [[954], [504, 968], [340]]  # banana, mug, zebra_folder


def test_grouped_logits_take_the_largest_logit_of_each_group():
    logits = torch.tensor([[0.1, 2.0, -1.0, 0.5], [3.0, -2.0, 0.0, 1.0]])
    out = grouped_logits(logits, [[2], [0, 3], [1, 2]])
    assert torch.equal(out, torch.tensor([[-1.0, 0.5, 2.0], [0.0, 3.0, 0.0]]))

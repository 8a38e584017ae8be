"""Weight transfer from the inpainting twin to the segmentation model."""

import pytest
import torch

from ssinfnet.models.registry import build_model
from ssinfnet.models.transfer import TransferReport, transfer_weights

TINY = {"backbone": "resnet18", "backbone_kwargs": {"channels": (8, 16, 32, 64), "stem_width": 8},
        "channels": 8, "edge_channels": 8, "ra_widths": (16, 8, 8)}


def _is_head(name, heads):
    return name.split(".")[0] in heads


@pytest.mark.parametrize("name,kwargs", [("infnet", TINY), ("infnet_multi", TINY),
                                         ("unet", {"base_width": 4, "depth": 2})])
def test_inpainter_trunk_copied_into_segmenter(name, kwargs):
    torch.manual_seed(0)
    src = build_model(name, head="inpaint", **kwargs)
    torch.manual_seed(1)
    dst = build_model(name, **kwargs)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = transfer_weights(src, dst)
    state, src_state = dst.state_dict(), src.state_dict()
    non_head = [k for k in state if not _is_head(k, dst.head_names)]
    assert sorted(report.copied) == sorted(non_head)
    assert len(report.copied) + len(report.skipped_head) == len(state)
    assert report.skipped_shape == [] and report.missing == [] and report.unused == []
    for k in non_head:
        torch.testing.assert_close(state[k], src_state[k], rtol=0, atol=0)
    for k in report.skipped_head:
        torch.testing.assert_close(state[k], before[k], rtol=0, atol=0)
    # the transferred segmenter still runs and gives its own head's shape
    with torch.no_grad():
        out = dst.eval()(torch.randn(1, dst.in_chans, 64, 64))
    assert out[dst.prediction_key].shape[1] == (3 if name == "infnet_multi" else 1)


def test_state_dict_source_and_shape_mismatch_reported():
    torch.manual_seed(0)
    single = build_model("infnet", head="inpaint", **TINY)
    multi = build_model("infnet_multi", **TINY)
    report = transfer_weights(dict(single.state_dict()), multi)
    mismatched = {name: (s, d) for name, s, d in report.skipped_shape}
    # the first convolution sees 1 vs 2 channels; the RA convs see the extra prior channel
    assert mismatched["backbone.conv1.weight"] == ((64, 1, 7, 7), (64, 2, 7, 7))
    assert "ra3.convs.0.0.weight" in mismatched
    assert len(report.copied) + len(report.skipped_head) + len(report.skipped_shape) \
        + len(report.missing) == len(multi.state_dict())
    torch.testing.assert_close(multi.state_dict()["backbone.layer1.0.conv1.weight"],
                               single.state_dict()["backbone.layer1.0.conv1.weight"])


def test_missing_and_unused_names_reported_and_str_readable():
    src = {"a.weight": torch.zeros(2), "stem.0.weight": torch.zeros(1)}
    dst = build_model("unet", base_width=2, depth=1)
    report = transfer_weights(src, dst)
    assert report.unused == ["a.weight"]
    assert report.skipped_shape[0][0] == "stem.0.weight"
    assert len(report.missing) == len(dst.state_dict()) - 1 - 2  # minus the shape clash and head
    text = str(report)
    assert text.startswith("copied: 0 tensors")
    assert "skipped (head): 2" in text and "head.weight" in text
    assert "skipped (shape mismatch): 1" in text and "(1,) -> (2, 1, 3, 3)" in text
    assert "unused from source: 1" in text and "... and" in text


def test_explicit_head_names_and_bad_input():
    src = build_model("unet", base_width=2, depth=1, head="inpaint")
    dst = build_model("unet", base_width=2, depth=1)
    report = transfer_weights(src, dst, head_names=("head", "stem"))
    assert all(n.startswith(("head.", "stem.")) for n in report.skipped_head)
    assert len(report.skipped_head) == 2 + len(dst.stem.state_dict())
    assert isinstance(report, TransferReport)
    with pytest.raises(ValueError, match="src"):
        transfer_weights([1, 2], dst)
    with pytest.raises(ValueError, match="dst"):
        transfer_weights(src, {"a": 1})


def test_only_restricts_the_copy_to_the_named_modules():
    torch.manual_seed(0)
    src = build_model("infnet", head="inpaint", **TINY)
    torch.manual_seed(1)
    dst = build_model("infnet", head="seg", **TINY)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = transfer_weights(src, dst, only=dst.encoder_names)
    after = dst.state_dict()
    assert report.copied == [n for n in after if n.startswith("backbone.")]
    assert all(torch.equal(after[n], src.state_dict()[n]) for n in report.copied)
    assert all(torch.equal(after[n], before[n]) for n in report.not_requested + report.skipped_head)
    assert "not requested (kept their initialisation)" in str(report)
    for bad in ("backbone", [], ["encoder"]):
        with pytest.raises(ValueError, match="only"):
            transfer_weights(src, dst, only=bad)

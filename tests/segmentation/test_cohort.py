"""Class maps of a cohort's slices: stage 1 -> stage 2 (with the stage-1 prior) -> argmax -> inside the lungs."""
import numpy as np
import pytest
import torch

from ssinfnet.data.phantoms import make_phantom_hu, window_hu
from ssinfnet.data.sample import Sample
from ssinfnet.models.registry import build_model
from ssinfnet.segmentation.cohort import SLICE_COLUMNS, lung_masks, predict_class_maps
from ssinfnet.segmentation.predict import predict_samples
from ssinfnet.severity.lungs import segment_lungs
from ssinfnet.training.export import export_model, load_exported

SIZE = 32
TINY = {"base_width": 4, "depth": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Untrained tiny U-Nets; the multi head is sharpened and centred so that all three classes occur."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    single, multi = build_model("unet", **TINY), build_model("unet_multi", **TINY)
    for m in (single, multi):
        m.train()
        with torch.no_grad():
            m(torch.randn(4, m.in_chans, SIZE, SIZE))
        m.eval()
    with torch.no_grad():
        multi.head.weight.mul_(20)
        multi.head.bias.sub_(multi(torch.randn(4, 2, SIZE, SIZE))["out"].mean((0, 2, 3)))
    return {"single": load_exported(export_model(root / "s.pt", single, "unet", TINY, SIZE, task="single")),
            "multi": load_exported(export_model(root / "m.pt", multi, "unet_multi", TINY, SIZE, task="multi")),
            "oracle": load_exported(export_model(root / "o.pt", multi, "unet_multi", TINY, SIZE, task="multi",
                                                 extra={"prior_source": "ground_truth"}))}


@pytest.fixture(scope="module")
def slices():
    out = []
    for pid, size in ((1, 64), (1, 64), (2, 72)):
        hu, _, _ = make_phantom_hu(len(out), size, seed=pid, lesion_load=0.8)
        out.append(Sample(image=window_hu(hu), slice_id=f"{pid}/{len(out)}", source="ictcf", subset="patients",
                          path="", group_id=str(pid)))
    return out


def test_maps_are_the_stage2_argmax_inside_the_lungs(models, slices):
    out = predict_class_maps(models["single"], models["multi"], slices)
    infection = predict_samples(models["single"], slices)
    classes = predict_samples(models["multi"], slices, priors=infection)
    for s, p_inf, p in zip(slices, infection, classes):
        lungs = segment_lungs(s.image).mask
        want = np.where(lungs, p.argmax(0), 0).astype(np.uint8)
        got = out.class_maps[s.slice_id]
        assert got.dtype == np.uint8 and got.shape == s.image.shape
        np.testing.assert_array_equal(got, want)
        row = out.slices.set_index("slice_id").loc[s.slice_id]
        assert row.lung_pixels == lungs.sum() and row.patient_id == s.group_id
        assert row.infection_pixels == ((p_inf >= 0.5) & lungs).sum()
        assert row.lesion_pixels_outside_lungs == ((p.argmax(0) > 0) & ~lungs).sum()
        assert row.ggo_pixels == (want == 1).sum() and row.consolidation_pixels == (want == 2).sum()
    assert list(out.slices.columns) == SLICE_COLUMNS and list(out.slices.slice_id) == [s.slice_id for s in slices]
    codes = set(np.unique(np.concatenate([m.ravel() for m in out.class_maps.values()])))
    assert 0 in codes and codes & {1, 2}  # background and some lesion: the restriction did not erase all
    assert out.n_flagged == (out.slices.lung_flags != "").sum()
    assert [m.shape for m in out.maps_of(slices[::-1])] == [s.image.shape for s in slices[::-1]]


def test_flip_reaches_both_stages(models, slices):
    out = predict_class_maps(models["single"], models["multi"], slices, flip=True)
    infection = predict_samples(models["single"], slices, flip=True)
    classes = predict_samples(models["multi"], slices, priors=infection, flip=True)
    for s, p in zip(slices, classes):
        want = np.where(segment_lungs(s.image).mask, p.argmax(0), 0).astype(np.uint8)
        np.testing.assert_array_equal(out.class_maps[s.slice_id], want)


def test_chunks_and_processes_do_not_change_the_maps(models, slices):
    whole = predict_class_maps(models["single"], models["multi"], slices)
    parts = predict_class_maps(models["single"], models["multi"], slices, chunk=2, n_jobs=2)
    for sid in whole.class_maps:
        np.testing.assert_array_equal(whole.class_maps[sid], parts.class_maps[sid])
    assert whole.slices.equals(parts.slices)
    assert [m.flags for m in lung_masks([s.image for s in slices], n_jobs=2)] == \
        [segment_lungs(s.image).flags for s in slices]


def test_a_blank_slice_gets_an_empty_map_and_a_flag(models, slices):
    blank = Sample(image=np.zeros((40, 40), np.uint8), slice_id="3/blank", source="ictcf", subset="patients",
                   path="", group_id="3")
    out = predict_class_maps(models["single"], models["multi"], [slices[0], blank])
    assert not out.class_maps["3/blank"].any()
    assert out.slices.set_index("slice_id").loc["3/blank"].lung_flags.startswith("image is constant (blank)")
    assert out.n_flagged >= 1


def test_bad_input_is_refused(models, slices):
    single, multi = models["single"], models["multi"]
    with pytest.raises(ValueError, match="samples is empty"):
        predict_class_maps(single, multi, [])
    with pytest.raises(ValueError, match=r"duplicate slice ids \['1/0'\]"):
        predict_class_maps(single, multi, [slices[0], slices[0]])
    with pytest.raises(ValueError, match="stage1: expected a single segmentation model, got task 'multi'"):
        predict_class_maps(multi, multi, slices)
    with pytest.raises(ValueError, match="multi: expected a multi segmentation model, got task 'single'"):
        predict_class_maps(single, single, slices)
    with pytest.raises(ValueError, match=r"o\.pt was trained with the ground-truth prior"):
        predict_class_maps(single, models["oracle"], slices)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        predict_class_maps(single, multi, slices, chunk=0)
    with pytest.raises(ValueError, match="must be exported models"):
        predict_class_maps(single.model, multi, slices)

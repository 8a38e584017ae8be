"""predict's pipeline (segmentation/pipeline.py): input steps, lung restriction, maps back in the input's
frame, the out-of-distribution flags, and the training reference a model carries."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from ssinfnet.data.inputs import prepare_slice
from ssinfnet.data.phantoms import synthetic_subset, window_hu, make_phantom_hu
from ssinfnet.data.signature import SEMISEG_REFERENCE, Reference, reference_record
from ssinfnet.severity.lungs import LungMask
from ssinfnet.segmentation.pipeline import (LESION_LUNG_MAX, MODEL_ONLY, PredictOptions, SliceResult,
                                            model_reference, ood_reasons, predict_slices)
from ssinfnet.training.export import LoadedModel


class Constant(torch.nn.Module):
    """A 'segmenter' whose logit is ``value`` everywhere (a model that marks all or nothing)."""

    in_chans = 1

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return {"out": torch.full((x.shape[0], 1, *x.shape[-2:]), self.value)}


@pytest.fixture(scope="module")
def phantom_ref():
    return Reference.from_dict(reference_record(synthetic_subset("train", 12, size=96)))


def _model(value: float, extra=None) -> LoadedModel:
    return LoadedModel(Constant(value), "constant", 32, {}, extra or {}, "single")


def test_model_reference_is_the_recorded_one_else_semiseg(phantom_ref):
    assert model_reference(_model(0.0, {"input_reference": phantom_ref.to_dict()})) == phantom_ref
    assert model_reference(_model(0.0)) is SEMISEG_REFERENCE
    with pytest.raises(ValueError, match="constant: malformed input reference"):
        model_reference(_model(0.0, {"input_reference": {"n": 3}}))


def test_a_full_field_slice_is_cropped_and_the_maps_come_back_in_its_frame(phantom_ref):
    s = synthetic_subset("test", 1, size=96)[0]
    wide = np.pad(s.image, 48, constant_values=60)
    [res] = predict_slices(_model(10.0), [(wide, "uint8")], PredictOptions(reference=phantom_ref))
    prep = res.prepared
    assert prep.cropped and res.prob.shape == wide.shape
    t, left, b, r = prep.box
    assert res.prob[:t].max() == 0 and res.prob[:, r:].max() == 0  # nothing outside the crop
    # the model marks everything; the restriction keeps the lungs and what lies near them
    inside = res.prob[t:b, left:r] >= 0.5
    lungs = res.lungs.mask
    assert inside[lungs].all() and inside.mean() < 0.9
    rec = res.record()
    assert rec["lung_restricted"] == "yes" and rec["input_steps"].startswith("cropped to the body")
    assert rec["ood"] == "yes" and "predicted lesion covers" in rec["ood_reason"]


def test_model_only_changes_nothing(phantom_ref):
    s = synthetic_subset("test", 1, size=96)[0]
    wide = np.pad(s.image, 48, constant_values=60)
    [res] = predict_slices(_model(10.0), [(wide, "uint8")], MODEL_ONLY)
    assert res.prepared.steps == [] and not res.restricted and (res.prob > 0.99).all()
    assert "input unlike the training slices" in res.ood[0]  # the reference is still compared (SemiSeg's)


def test_an_in_distribution_slice_with_a_plausible_prediction_is_not_flagged(phantom_ref):
    s = synthetic_subset("test", 1, size=96)[0]
    [res] = predict_slices(_model(-10.0), [(s.image, "uint8")], PredictOptions(reference=phantom_ref))
    assert res.ood == [] and res.record()["ood"] == "no" and res.prepared.steps == []
    assert res.record()["lesion_outside_lung"] == ""  # nothing predicted: no share
    assert res.prob.max() < 1e-3


def test_hu_input_is_windowed_and_recorded(phantom_ref):
    hu, _, _ = make_phantom_hu(2, 96, seed=10_000)
    [res] = predict_slices(_model(-10.0), [(hu, "hu")], PredictOptions(reference=phantom_ref))
    assert res.record()["kind"] == "hu" and res.prepared.steps == ["HU windowed to level -600, width 1500"]
    np.testing.assert_array_equal(res.prepared.image, window_hu(hu))


def _lungs(mask, flags=()):
    return LungMask(mask, mask.astype(np.int8), 1, float(mask.mean()), list(flags))


def test_ood_reasons_for_known_inputs(phantom_ref):
    s = synthetic_subset("test", 1, size=96)[0]
    prep = prepare_slice(s.image, "uint8")  # no reference: no distance
    lungs = np.zeros((96, 96), bool)
    lungs[20:76, 10:40] = lungs[20:76, 56:86] = True
    none = np.zeros((96, 96), np.float32)
    info = {"outside_share": float("nan")}
    assert ood_reasons(prep, _lungs(lungs), none, info, True, 1.5) == ([], 0.0)
    assert ood_reasons(prep, _lungs(lungs, ["only one lung found (x)"]), none, info, True, 1.5)[0] == []
    assert ood_reasons(prep, _lungs(np.zeros((96, 96), bool), ["no lung found"]), none, info, True, 1.5)[0] == \
        ["no lungs found (no lung found)"]
    assert ood_reasons(prep, _lungs(lungs, ["lung area 99% of image"]), none, info, True, 1.5)[0] == \
        ["lung mask implausible (lung area 99% of image)"]
    full = lungs.astype(np.float32)
    reasons, share = ood_reasons(prep, _lungs(lungs), full, info, True, 1.5)
    assert share == 1.0 > LESION_LUNG_MAX and reasons == ["predicted lesion covers 100% of the lungs"]
    everywhere = np.ones((96, 96), np.float32)
    reasons, _ = ood_reasons(prep, _lungs(lungs), everywhere, {"outside_share": 0.64}, False, 1.5)
    assert reasons == ["predicted lesion covers 100% of the lungs", "predicted lesion covers 100% of the slice",
                       "64% of the predicted lesion lies outside the lungs"]
    far = prepare_slice(np.pad(s.image, 48, constant_values=60), "uint8")
    far.distance = 3.25
    assert ood_reasons(far, _lungs(lungs), none, info, True, 1.5)[0] == [
        "input unlike the training slices after the input steps (signature distance 3.2)"]


def test_known_maps_are_only_taken_for_unchanged_slices(phantom_ref):
    from ssinfnet.segmentation.pipeline import predict_prepared, prepare_slices

    s = synthetic_subset("test", 1, size=96)[0]
    wide = np.pad(s.image, 48, constant_values=60)
    opts = PredictOptions(reference=phantom_ref)
    inputs = prepare_slices([(s.image, "uint8"), (wide, "uint8")], opts, phantom_ref)
    known = [np.full(s.image.shape, 0.75, np.float32), None]
    res = predict_prepared(_model(-10.0), inputs, opts, known=known)
    assert res[0].prob[res[0].lungs.mask].min() == np.float32(0.75)  # taken, not predicted (the model says 0)
    with pytest.raises(ValueError, match="slice 1: a known map is only valid"):
        predict_prepared(_model(-10.0), inputs, opts, known=[None, np.zeros(wide.shape, np.float32)])


def test_fit_records_the_training_reference(tmp_path):
    from ssinfnet.segmentation.fit import fit
    from ssinfnet.segmentation.variants import variant_config
    from ssinfnet.training.export import load_exported

    phantoms = synthetic_subset("train", 4, size=48)
    cfg = variant_config("unet", epochs=1, batch_size=2, image_size=32, model_kwargs={"base_width": 4, "depth": 2})
    res = fit(cfg, phantoms[:3], phantoms[3:], device="cpu", seed=0, run_dir=tmp_path / "u", progress=False)
    loaded = load_exported(res.export_path)
    assert loaded.extra["input_reference"] == reference_record(phantoms[:3])
    assert model_reference(loaded).window == (-600.0, 1500.0)


def test_slice_result_record_has_the_csv_columns():
    from ssinfnet.segmentation.folders import CSV_FIELDS

    prep = prepare_slice(np.zeros((16, 16), np.uint8), "uint8")
    res = SliceResult(prep, np.zeros((16, 16)), None, _lungs(np.zeros((16, 16), bool)), False,
                      {"outside_share": float("nan"), "removed_share": float("nan")}, ["x"])
    assert set(res.record()) <= set(CSV_FIELDS)
    assert set(CSV_FIELDS) - set(res.record()) == {"path", "slice", "status", "reason", "height", "width",
                                                   "infection_fraction", "infection_soft_sum", "ggo_fraction",
                                                   "consolidation_fraction"}


class _LeftRight(torch.nn.Module):
    """Logit +4 on the left half of the input, -4 on the right: flip-averaging gives 0 (p = 0.5) everywhere."""

    in_chans = 1

    def forward(self, x):
        w = x.shape[-1]
        logits = torch.full((x.shape[0], 1, *x.shape[-2:]), -4.0)
        logits[..., : w // 2] = 4.0
        return {"out": logits}


def test_predict_options_flip_averages_with_the_mirror(phantom_ref):
    s = synthetic_subset("test", 1, size=64)[0]
    model = LoadedModel(_LeftRight(), "left-right", 64, {}, {}, "single")
    opts = PredictOptions(lung_mask=False, crop=False, rewindow=False, reference=phantom_ref)
    [plain] = predict_slices(model, [(s.image, "uint8")], opts)
    [flipped] = predict_slices(model, [(s.image, "uint8")], replace(opts, flip=True))
    assert plain.prob[:, :30].min() > 0.9 and plain.prob[:, 34:].max() < 0.1
    np.testing.assert_allclose(flipped.prob, 0.5, atol=1e-6)
    assert MODEL_ONLY.flip is False and PredictOptions().flip is False

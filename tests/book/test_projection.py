"""Projected training time: the image count of each training stage's schedule, and the sentence."""
import pytest

from ssinfnet.book import projection as P
from ssinfnet.book.profiles import get_profile


def test_paper_pretraining_counts_every_phase():
    paper = get_profile("paper")
    # 200 + 200 + 9 x (100 + 100) = 2,200 epochs over the whole pool
    assert P.training_images(paper, "02_pretraining", n_train=50, n_pool=1650) == 2200 * 1650


def test_finetuning_counts_variants_and_folds():
    p = get_profile("cpu", finetune_epochs=10, cv_folds=5, val_fraction=0.2,
                    single_variants=("sinfnet", "ssinfnet"), cv_variants=("ssinfnet",))
    # fit: 2 variants x 40 slices; CV: 5 folds x 50 x 4/5 x 4/5 = 32 slices each
    assert P.training_images(p, "03_single", n_train=50) == 10 * (2 * 40 + 5 * 32)


def test_multi_adds_pretraining_on_half_the_pool_and_smoke_caps_steps():
    smoke = get_profile("smoke")  # 3 steps of 4 images per epoch at most
    n = P.training_images(smoke, "04_multi", n_train=12, n_pool=20)
    # 5 multi variants x 10 fit slices, none cross-validated in smoke; a pool of 20 capped at 12 per epoch, 4 epochs
    assert smoke.multi_epochs == 2 and len(smoke.multi_variants) == 5
    assert n == 2 * 5 * 10 + 4 * 12


def test_bad_stage_and_the_sentence():
    with pytest.raises(ValueError, match="stage must be one of"):
        P.training_images(get_profile("smoke"), "05_evaluation", 10)
    line = P.projection_line(get_profile("paper"), "02_pretraining", "cuda", 50, 1650, ms_per_image=1.0)
    assert line.startswith("projected training time of 02_pretraining: 1.0 h or more (3,630,000 training images")


def test_measured_speed_is_positive_on_cpu():
    ms = P.measure_ms_per_image(get_profile("smoke"), "cpu", repeats=1)
    assert 0 < ms < 10_000

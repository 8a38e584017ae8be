"""Projected training time: the image count of each training stage's schedule per network, and the sentence."""
import pytest

from ssinfnet.book import projection as P
from ssinfnet.book.profiles import get_profile


def test_paper_pretraining_counts_every_phase():
    paper = get_profile("paper")
    # 200 + 200 + 9 x (100 + 100) = 2,200 epochs over the whole pool, all at the inpainter's speed
    assert P.training_images_by_network(paper, "02_pretraining", n_train=50, n_pool=1650) == {"inpainter": 2200 * 1650}
    assert P.training_images(paper, "02_pretraining", n_train=50, n_pool=1650) == 2200 * 1650


def test_finetuning_counts_variants_extra_seeds_and_folds_per_network():
    p = get_profile("cpu", finetune_epochs=10, cv_folds=5, val_fraction=0.2, n_seeds=3,
                    single_variants=("sinfnet", "ssinfnet", "unet"), cv_variants=("ssinfnet",),
                    seed_variants=("ssinfnet", "unet"))
    # fits of 40 slices: sinfnet 1, ssinfnet 3 seeds, unet 3 seeds; CV: ssinfnet 5 folds x 50 x 4/5 x 4/5 = 32
    counts = P.training_images_by_network(p, "03_single", n_train=50)
    assert counts == {"infnet": 10 * (4 * 40 + 5 * 32), "unet": 10 * 3 * 40}
    assert P.training_images(p, "03_single", n_train=50) == 10 * (7 * 40 + 5 * 32)


def test_multi_adds_pretraining_on_its_pool_and_smoke_caps_steps():
    smoke = get_profile("smoke")  # 3 steps of 4 images per epoch at most
    assert smoke.multi_epochs == 2 and smoke.n_seeds == 2
    assert smoke.multi_seed_variants == ("multi_ssinfnet", "multi_sinfnet")
    counts = P.training_images_by_network(smoke, "04_multi", n_train=12, n_pool=20)
    # 4 InfNet variants + 2 extra seeds = 6 fits of 10 slices, one FCN8s fit;
    # a pool of 20 capped at 12 per epoch, 4 epochs
    assert counts == {"inpainter": 4 * 12, "infnet_multi": 2 * 6 * 10, "fcn8s": 2 * 10}


def test_specs_name_what_each_stage_builds():
    smoke = get_profile("smoke")
    specs = P.network_specs(smoke, "04_multi")
    assert set(specs) == {"inpainter", "infnet_multi", "fcn8s"}
    assert specs["inpainter"][1]["in_chans"] == 2 and specs["inpainter"][1]["head"] == "inpaint"
    assert specs["fcn8s"] == ("fcn8s", {"fc_width": 32, "in_chans": 2})
    assert set(P.network_specs(smoke, "02_pretraining")) == {"inpainter"}


def test_bad_stage_and_the_sentence():
    with pytest.raises(ValueError, match="stage must be one of"):
        P.training_images(get_profile("smoke"), "05_evaluation", 10)
    with pytest.raises(ValueError, match="stage must be one of"):
        P.network_specs(get_profile("smoke"), "01_data")
    line = P.projection_line(get_profile("paper"), "02_pretraining", "cuda", 50, 1650, ms_per_image=1.0)
    assert line.startswith("projected training time of 02_pretraining: 1.0 h if every fit runs to its epoch cap "
                           "(inpainter: 3,630,000 images x 1.0 ms;")


def test_the_sentence_sums_networks_at_their_own_speeds():
    p = get_profile("cpu", finetune_epochs=10, cv_folds=5, val_fraction=0.2, n_seeds=1,
                    single_variants=("sinfnet", "unet"), cv_variants=(), seed_variants=())
    # 400 InfNet images x 60 ms + 400 U-Net images x 240 ms = 120 s
    line = P.projection_line(p, "03_single", "cpu", 50, ms_per_image={"infnet": 60.0, "unet": 240.0})
    assert "03_single: 2.0 min if" in line and "infnet: 400 images x 60.0 ms; unet: 400 images x 240.0 ms" in line
    with pytest.raises(ValueError, match=r"no speed for \['unet'\]"):
        P.projection_line(p, "03_single", "cpu", 50, ms_per_image={"infnet": 60.0})


def test_measured_speed_is_positive_for_every_network_of_the_multi_stage():
    smoke = get_profile("smoke")
    for label, (network, kwargs) in P.network_specs(smoke, "04_multi").items():
        ms = P.measure_ms_per_image(smoke, "cpu", network, kwargs, repeats=1)
        assert 0 < ms < 10_000, label

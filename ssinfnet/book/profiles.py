"""The profile table: one switch that sizes every chapter (papermill parameter ``profile``).

* ``smoke``: seconds to minutes on 2 CPU cores; tiny phantoms, a light backbone, a few steps.
  What CI executes under nbval.
* ``cpu``: real data on a 2-core CPU in under two hours for the whole book: smaller images, fewer
  epochs and a lighter backbone than the paper (each chapter states what was reduced). Fine-tuning runs
  at most 60 epochs and stops after 25 without a better validation Dice; to converge in 60 epochs the
  single-class Adam rate is 5e-4 (the paper: 1e-4) and every fine-tuning rate drops 10x at 75 % of the
  cap (the paper: constant). Measured on real data, 2-core AMD EPYC (2026-12-01), SInfNet from scratch
  at 160 px, before the shift augmentations were added: this recipe reached validation Dice 0.673 and
  Inf-Net meanDic 0.600 on the 48 test slices in 60 epochs; the paper's rate 1e-4 needed 200 epochs for
  0.671 / 0.618. With them (the published run), seeds 0-2 reach meanDic 0.568-0.590, and 0.594-0.605
  at 192 px (benchmarks/finetune_cap.py, input-size arm). The patience stays above the ~15-epoch dip
  the inpainting-initialised variants went through in an earlier cpu run.
* ``gpu``: the paper's network, resolution and recipe on one GPU with schedules cut so the whole book
  runs in minutes; each chapter says what was cut (:func:`reductions`).
* ``paper``: the paper's exact settings and schedules on one GPU: 352 px, Res2Net-50, pretraining
  inpainter 200 epochs, coach 200, then 9 alternations of inpainter 100 + coach 100 (each inpainter
  phase's SGD rate 0.1 -> 0.01 -> 0.001 -> 0.0001 at 40/80/90 % of the phase; coach Adam 1e-5),
  fine-tuning 500 epochs (single: Adam 1e-4; multi: SGD 0.01 momentum 0.7, focal loss, Lookahead k 5,
  alpha 0.5). One addition: every fine-tuning stops after 50 epochs without a better validation Dice
  (``patience``; the paper ran all 500 and selected on its test fold). The paper's texts call the pretraining "2000 epochs"; its phases add up to 2,200
  (200 + 200 + 9 x 200), which is what runs here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Profile:
    """Every size, count and schedule a run depends on. Override fields with :meth:`with_overrides`."""

    name: str
    image_size: int                 # training/inference side in pixels
    backbone: str                   # timm name of the InfNet encoder
    batch_size: int
    # extra InfNet constructor arguments (narrow encoder and decoder for the CPU profiles)
    model_kwargs: dict = field(default_factory=dict)
    # constructor arguments of the baselines, by registry name (e.g. a narrower U-Net on CPU)
    baseline_kwargs: dict = field(default_factory=dict)
    # which fine-tuning variants run (names of ssinfnet.segmentation.variants.VARIANTS), and which are cross-validated
    single_variants: tuple = ("sinfnet", "ssinfnet", "sinfnet_cutout40", "sinfnet_cutout50",
                              "ssinfnet_cutout40", "ssinfnet_cutout50", "unet", "ssinfnet_encoder")
    multi_variants: tuple = ("multi_ssinfnet", "multi_sinfnet", "multi_ssinfnet_no_inpainting",
                             "multi_ssinfnet_no_focal", "multi_ssinfnet_no_lookahead", "multi_unet",
                             "multi_fcn8s", "multi_ssinfnet_gt_prior", "multi_ssinfnet_encoder")
    # both members of each cross-validation consistency claim of the verdict (J Transl Med Tables S2, S3)
    cv_variants: tuple = ("sinfnet", "ssinfnet", "multi_sinfnet", "multi_ssinfnet")
    # the decisive comparison (chapter 5): these variants are fine-tuned with ``n_seeds`` seeds, seed k
    # with training seed ``seed + k``; seed 0 is the model every chapter uses. Pretraining runs once (with
    # ``seed``): the extra seeds re-run fine-tuning only, from the same pretrained weights.
    seed_variants: tuple = ("sinfnet", "ssinfnet", "ssinfnet_encoder", "unet", "multi_ssinfnet", "multi_sinfnet")
    n_seeds: int = 5
    # synthetic embedded default (ignored on real data)
    synthetic_size: int = 128
    synthetic_counts: dict = field(default_factory=lambda: {"train": 24, "test": 12, "unlabelled": 48})
    unlabelled_limit: int | None = None   # evenly spaced subsample of the unlabelled pool (None: all 1,600)
    # self-supervised pretraining (epochs per phase; the paper: 200 / 200 / 100+100 alternating)
    pretrain_inpainter_epochs: int = 1
    pretrain_coach_epochs: int = 1
    pretrain_alternations: int = 1
    pretrain_alternate_epochs: int = 1
    keep_fraction: float = 0.75
    # the inpainter's starting SGD rate, from which each phase's ladder steps down (None: the paper's 0.1).
    # At 0.1 the cpu run's inpainter threw a third of its output pixels past the loss's clipping ceiling in
    # the first steps, where they get no gradient back, and ended worse than filling with the mean
    # (chapter 2's reconstruction table); at 0.01 the same schedule learns (benchmarks/pretrain_lr.py)
    pretrain_lr: float | None = None
    # fine-tuning: epochs are the cap; ``patience`` stops a variant after that many epochs without a
    # better validation Dice (None: run every epoch; chosen above the ~15-epoch dip the inpainting-
    # initialised variants go through, see the cpu profile)
    finetune_epochs: int = 2
    multi_epochs: int = 2
    patience: int | None = None
    # single-class Adam rate (None: the paper's 1e-4) and the fraction of the cap at which every
    # fine-tuning rate drops 10x (None: constant, as the paper); short schedules need both to converge
    single_lr: float | None = None
    finetune_lr_drop: float | None = None
    # the shift augmentations (window, gamma, resolution, noise, JPEG, field of view) in every fine-tuning:
    # on real data they left clean Dice unchanged and raised shifted Dice (benchmarks/robust_augmentation.py)
    shift_augmentation: bool = False
    # test-time flip: every prediction the book scores or hands on (chapter 5's test maps and seeds, its
    # shift benchmark, chapter 7's cohort maps) averages the network's logits for the slice and for its
    # left-right mirror (predict_probabilities(flip=True)); inference only, twice its cost. Training
    # inputs stay plain: the validation Dice fine-tuning selects epochs on, the stage-1 priors the multi
    # model trains on. On the cpu profile's 12 SInfNet/SSInfNet fits (160 and 192 px, 3 seeds) it raised
    # validation meanDic for all 12 (benchmarks/finetune_cap.py --flip); for the two-stage multi-class
    # models validation only weakly supports it (mean of GGO and consolidation +0.005 over 3 seeds, 2 of 3
    # higher, GGO lower for all 3: benchmarks/multi_flip.py); one switch serves both tasks
    test_time_flip: bool = False
    max_steps_per_epoch: int | None = None
    cv_folds: int = 3
    val_fraction: float = 0.2
    # statistics
    n_boot: int = 200
    simulation_replicates: int = 20
    radiomics_slice_limit: int | None = None  # slices per subset for radiomics (None: all)
    # iCTCF CT images (chapter 7's image branch): first N patient folders segmented and measured (None: all).
    # Lung masks and radiomics cost about 2 and 4 CPU-seconds per 512 px slice.
    ictcf_patient_limit: int | None = None
    num_workers: int = 0
    # fine-tuning runs of a chapter trained at once, each in its own process sharing this one's threads
    # (ssinfnet.segmentation.parallel; 1: one after another). On 2 CPU cores 2 workers finished a set of
    # fits 1.14x sooner (benchmarks/parallel_fits.py); numbers agree with one worker to training noise
    fit_workers: int = 1
    seed: int = 0

    def with_overrides(self, **overrides) -> "Profile":
        """A copy with some fields replaced; unknown names raise ValueError listing the valid ones."""
        valid = set(self.__dataclass_fields__)
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown profile fields {unknown}; valid: {sorted(valid)}")
        return replace(self, **overrides)

    def __post_init__(self):
        if not (isinstance(self.n_seeds, int) and self.n_seeds >= 1):
            raise ValueError(f"profile {self.name!r}: n_seeds must be an integer >= 1, got {self.n_seeds!r}")
        if not (isinstance(self.fit_workers, int) and not isinstance(self.fit_workers, bool) and self.fit_workers >= 1):
            raise ValueError(f"profile {self.name!r}: fit_workers must be an integer >= 1, got {self.fit_workers!r}")
        if not isinstance(self.test_time_flip, bool):
            raise ValueError(f"profile {self.name!r}: test_time_flip must be True or False, got {self.test_time_flip!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def single_seed_variants(self) -> tuple:
        """The variants of ``seed_variants`` that chapter 3 trains (in ``single_variants``), in profile order."""
        return tuple(v for v in self.single_variants if v in self.seed_variants)

    @property
    def multi_seed_variants(self) -> tuple:
        """The variants of ``seed_variants`` that chapter 4 trains (in ``multi_variants``), in profile order."""
        return tuple(v for v in self.multi_variants if v in self.seed_variants)

    @property
    def extra_seeds(self) -> tuple:
        """The seed indices trained besides seed 0 (the existing models): 1 .. ``n_seeds`` - 1."""
        return tuple(range(1, self.n_seeds))

    def infnet_kwargs(self) -> dict:
        """Constructor arguments of the InfNet family for this profile (backbone included)."""
        return {"backbone": self.backbone, **self.model_kwargs}


PROFILES: dict[str, Profile] = {
    "smoke": Profile(name="smoke", image_size=64, backbone="resnet18", batch_size=4, synthetic_size=96,
                     model_kwargs={"backbone_kwargs": {"channels": (8, 16, 32, 64)},
                                   "channels": 8, "edge_channels": 16, "ra_widths": (32, 16, 16)},
                     synthetic_counts={"train": 12, "test": 6, "unlabelled": 16}, unlabelled_limit=32,
                     baseline_kwargs={"unet": {"base_width": 4, "depth": 3}, "unet_multi": {"base_width": 4, "depth": 3},
                                      "fcn8s": {"fc_width": 32}},
                     single_variants=("sinfnet", "ssinfnet", "unet", "ssinfnet_encoder"),
                     multi_variants=("multi_ssinfnet", "multi_sinfnet", "multi_fcn8s", "multi_ssinfnet_gt_prior",
                                     "multi_ssinfnet_encoder"),
                     cv_variants=("ssinfnet",), patience=2,  # 2 epochs: the cap always ends them, as "cap"
                     max_steps_per_epoch=3, n_seeds=2, n_boot=50, simulation_replicates=6, cv_folds=2,
                     radiomics_slice_limit=6, ictcf_patient_limit=24, test_time_flip=True),
    "cpu": Profile(name="cpu", image_size=160, backbone="resnet18", batch_size=8, unlabelled_limit=800,
                   baseline_kwargs={"unet": {"base_width": 32}, "unet_multi": {"base_width": 32},
                                    "fcn8s": {"fc_width": 512}},

                   pretrain_inpainter_epochs=4, pretrain_coach_epochs=1, pretrain_alternations=1,
                   pretrain_alternate_epochs=1, pretrain_lr=0.01, finetune_epochs=60, multi_epochs=60, patience=25, n_seeds=3,
                   single_lr=5e-4, finetune_lr_drop=0.75, shift_augmentation=True, test_time_flip=True, n_boot=1000,
                   ictcf_patient_limit=100,
                   cv_variants=("ssinfnet", "multi_ssinfnet"),
                   simulation_replicates=200),
    # sized from the H200 timings in ../shared/measurements (about 3.6 ms per training image at batch 16):
    # about 2 minutes of pretraining, 3 of fine-tuning and 1 of evaluation and statistics; to be confirmed
    # by benchmarks/gpu_check.sh, which prints the measured per-epoch times.
    "gpu": Profile(name="gpu", image_size=352, backbone="res2net50_26w_4s", batch_size=16,
                   synthetic_size=256, unlabelled_limit=400,
                   single_variants=("sinfnet", "ssinfnet", "unet", "ssinfnet_encoder"),
                   multi_variants=("multi_ssinfnet", "multi_sinfnet", "multi_unet", "multi_ssinfnet_gt_prior",
                                   "multi_ssinfnet_encoder"),
                   pretrain_inpainter_epochs=12, pretrain_coach_epochs=6, pretrain_alternations=2,
                   pretrain_alternate_epochs=6, pretrain_lr=0.01, finetune_epochs=60, multi_epochs=60, patience=20, n_boot=2000,
                   simulation_replicates=200, num_workers=4, ictcf_patient_limit=300, shift_augmentation=True,
                   test_time_flip=True),
    "paper": Profile(name="paper", image_size=352, backbone="res2net50_26w_4s", batch_size=16,
                     synthetic_size=256, pretrain_inpainter_epochs=200, pretrain_coach_epochs=200,
                     pretrain_alternations=9, pretrain_alternate_epochs=100, finetune_epochs=500,
                     multi_epochs=500, patience=50, n_boot=5000, simulation_replicates=1000, num_workers=4),
}


def get_profile(name: str, **overrides) -> Profile:
    """The named profile with optional overrides; unknown names list the valid choices."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name].with_overrides(**overrides) if overrides else PROFILES[name]


#: ``unlabelled_limit`` caps chapter 2's pool; chapter 4's multi pretraining takes half of that cap
#: (:func:`ssinfnet.book.stages.multi.pool_limit`), and both take the whole pool when there is no cap.
UNLABELLED_LABEL = "unlabelled slices used (single pretraining; multi: half the cap)"

#: The fields a reader needs to judge how reduced a profile is, with plain names.
SUMMARY_FIELDS = {
    "image_size": "input size (px)", "backbone": "InfNet encoder", "unlabelled_limit": UNLABELLED_LABEL,
    "pretrain_inpainter_epochs": "pretraining: inpainter epochs", "pretrain_coach_epochs": "pretraining: coach epochs",
    "pretrain_alternations": "pretraining: alternation rounds", "pretrain_lr": "pretraining: inpainter's starting SGD rate",
    "pretrain_alternate_epochs": "pretraining: epochs per alternation phase",
    "finetune_epochs": "stage-1 epochs", "multi_epochs": "stage-2 epochs",
    "patience": "fine-tuning: early-stopping patience (epochs)", "max_steps_per_epoch": "steps per epoch (cap)",
    "single_lr": "stage-1 Adam rate", "shift_augmentation": "fine-tuning: shift augmentations (ours)", "finetune_lr_drop": "fine-tuning: 10x rate drop at this fraction of the cap",
    "test_time_flip": "inference: left-right flip averaging (ours)",
    "cv_folds": "cross-validation folds", "n_seeds": "fine-tuning seeds of the comparison",
    "n_boot": "bootstrap resamples", "simulation_replicates": "simulation replicates",
}

#: How a ``None`` reads in the tables, where it is not "all" (the paper's constant rate of 1e-4).
NONE_READS = {"pretrain_lr": "0.1", "single_lr": "1e-4", "finetune_lr_drop": "none (constant rate)", "patience": "none"}


#: Settings of the ``paper`` profile that are our choices, not numbers the paper prints (it ran all its
#: epochs, one training per model, and reports no resampling): their rows say so instead of "paper: ...".
NOT_PRINTED = ("patience", "n_seeds", "n_boot", "simulation_replicates")


def _show(field_name: str, value) -> str:
    return NONE_READS.get(field_name, "all") if value is None else value


def reductions(profile: Profile, reference: str = "paper", unrecorded: Collection[str] = ()) -> dict[str, str]:
    """What ``profile`` runs less of than the ``reference`` profile (the paper's settings), as
    {plain name: "ours (paper: theirs)"}; empty for the reference itself. For the page that must say
    what was reduced. Settings of :data:`NOT_PRINTED` read "(paper profile: theirs; the paper prints none)".

    ``unrecorded``: fields a run's manifest does not record (a run records every field of its profile,
    so these did not exist when it was made).
    Their rows say so, with ``profile``'s value today, whether or not it differs from the paper's: the
    run cannot be assumed to have used it."""
    ref = PROFILES[reference]
    out = {}
    for f, label in SUMMARY_FIELDS.items():
        ours, theirs = getattr(profile, f), getattr(ref, f)
        who = "paper profile" if f in NOT_PRINTED else "paper"
        if f in unrecorded:
            out[label] = (f"not recorded: the run predates this setting (the profile today: {_show(f, ours)}; "
                          f"{who}: {_show(f, theirs)})")
        elif ours != theirs:
            unprinted = "; the paper prints none" if f in NOT_PRINTED else ""
            out[label] = f"{_show(f, ours)} ({who}: {_show(f, theirs)}{unprinted})"
    return out


def profile_table(names=("smoke", "cpu", "gpu", "paper")):
    """A table (rows: settings, columns: profiles) of what each profile runs; ``None`` shown as "all"."""
    import pandas as pd

    rows = {label: {n: _show(f, getattr(PROFILES[n], f)) for n in names}
            for f, label in SUMMARY_FIELDS.items()}
    return pd.DataFrame(rows).T

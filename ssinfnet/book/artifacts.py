"""The contract between chapters: every file a stage hands to a later one, declared once.

Each :class:`Artifact` names its one writer (a stage), its readers, its path inside the run folder
and its format. Stages write through :func:`record` (which refuses a name not declared for that
stage, or a path other than the declared one) and read through :func:`require` /
:func:`optional` (which refuse an undeclared name or a stage not listed as a reader, and turn a
missing file into :class:`MissingArtifact` naming the chapter to run). Names with a ``{variant}``
field stand for one file per variant of the profile list named by ``per``, and names with a ``{seed}``
field for one file per extra fine-tuning seed (``Profile.extra_seeds``: 1 .. ``n_seeds`` - 1). A reader
is a chapter or :data:`PAGE`, the results page rendered from the finished run.

``tests/book/test_artifacts.py`` runs every stage on the smoke profile and checks that the files
declared here are the files written, and that every read goes through this table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..evaluation.comparison import TABLE_COLUMNS

__all__ = ["Artifact", "ARTIFACTS", "CONDITIONS", "PAGE", "STAGE_NAMES", "MissingArtifact", "UndeclaredArtifact", "declared",
           "record", "require", "optional", "expected_outputs"]

#: Stage key (the notebook's stem) of each chapter number.
STAGE_NAMES = {"01": "01_data", "02": "02_pretraining", "03": "03_single", "04": "04_multi",
               "05": "05_evaluation", "06": "06_severity", "07": "07_radiomics_mediation"}

#: The reader that is not a chapter: the results page (``book/results.md``, :mod:`ssinfnet.book.results_page`),
#: written from the finished run when the book is rendered.
PAGE = "book"


@dataclass(frozen=True)
class Artifact:
    """One file a stage writes for later stages.

    ``name`` may hold ``{variant}``; ``path`` is relative to the run folder and uses the same fields;
    ``per`` names the profile field listing the variants (e.g. ``"single_variants"``); ``{seed}`` stands for
    each of the profile's ``extra_seeds``. ``when`` names
    the condition under which the writer writes it (a key of :data:`CONDITIONS`); None: always.
    """

    name: str
    writer: str
    path: str
    format: str
    readers: tuple[str, ...] = ()
    per: str | None = None
    when: str | None = None

    def matches(self, name: str) -> dict | None:
        """The template's fields when ``name`` is an instance of this artifact, else None."""
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[\\w.-]+)", re.escape(self.name)) + "$"
        m = re.match(pattern, name)
        return None if m is None else m.groupdict()


#: Conditions of artifacts written only sometimes (``Artifact.when``) -> when, in words.
CONDITIONS = {"usable_single": "a single-class InfNet-family model passed its training checks",
              "usable_multi": "a multi-class InfNet-family model other than the oracle passed its training checks",
              "ictcf_images": "the data root holds iCTCF CT images (ictcf-images/Patient <N>/) and the "
                              "clinical table, and chapter 5 selected a single- and a multi-class model whose "
                              "training did not fail"}

MODEL = "exported model (ssinfnet-model-v2, training.export.load_exported)"
MAPS = "per-slice maps (.npz keyed by slice id, data.maps)"

ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("split_manifest", "01_data", "splits/train_val.csv",
             "CSV: one row per training slice: slice_id, group, source, subset, split (train/val), path",
             ("02_pretraining", "03_single", "04_multi")),
    Artifact("inpainter", "02_pretraining", "pretrain/single/inpainter.pt", MODEL, ("03_single",)),
    Artifact("coach", "02_pretraining", "pretrain/single/coach.pt", MODEL),
    Artifact("pretrain_history", "02_pretraining", "pretrain/single/history.csv", "CSV: one row per epoch"),
    Artifact("coach_masks", "02_pretraining", "pretrain/single/coach_masks.pt",
             "torch tensors: the coach's masks of fixed slices after each phase"),
    Artifact("model:{variant}", "03_single", "finetune/{variant}/model.pt", MODEL,
             ("05_evaluation", "07_radiomics_mediation"), per="single_variants"),
    Artifact("model:{variant}@seed{seed}", "03_single", "finetune/{variant}/seed{seed}/model.pt",
             MODEL + ": fine-tuning seed k of a compared variant (training seed = profile seed + k; seed 0 is "
             "model:{variant}); the same pretrained inpainter", ("05_evaluation",), per="single_seed_variants"),
    Artifact("train_oof_priors", "03_single", "priors/train_oof_ssinfnet.npz",
             MAPS + ": held-out stage-1 probabilities of every training slice", ("04_multi",)),
    Artifact("stage1_model", "03_single", "finetune/ssinfnet/model.pt", MODEL + ": the stage-1 model",
             ("04_multi",)),
    Artifact("multi_inpainter", "04_multi", "pretrain/multi/inpainter.pt", MODEL),
    Artifact("multi_coach", "04_multi", "pretrain/multi/coach.pt", MODEL),
    Artifact("model:{variant}", "04_multi", "finetune/{variant}/model.pt", MODEL,
             ("05_evaluation", "07_radiomics_mediation"), per="multi_variants"),
    Artifact("model:{variant}@seed{seed}", "04_multi", "finetune/{variant}/seed{seed}/model.pt",
             MODEL + ": fine-tuning seed k of a compared variant (training seed = profile seed + k; seed 0 is "
             "model:{variant}); the same pretrained inpainter and priors", ("05_evaluation",),
             per="multi_seed_variants"),
    Artifact("test_predictions", "05_evaluation", "predictions/test_ssinfnet.npz",
             MAPS + ": infection probabilities of the test slices by the single-class model selected on "
             "validation (the manifest names it)", ("06_severity",), when="usable_single"),
    Artifact("test_class_maps", "05_evaluation", "predictions/test_multi_ssinfnet_classes.npz",
             MAPS + ": class labels of the test slices by the multi-class model selected on validation "
             "(the manifest names it)", ("07_radiomics_mediation",), when="usable_multi"),
    Artifact("comparisons", "05_evaluation", "05_evaluation/comparisons.csv",
             "CSV: one row per comparison of two variants on the test slices (paired bootstrap over images and "
             "fine-tuning seeds): " + ", ".join(TABLE_COLUMNS), (PAGE,)),
    Artifact("test_severity", "06_severity", "06_severity/test_severity.csv", "CSV: one row per test slice"),
    Artifact("mediation", "07_radiomics_mediation", "07_radiomics_mediation/mediation.csv",
             "CSV: the paper's rule, one row per exposure and candidate mediator (BH over features x exposures)"),
    Artifact("natural_effects", "07_radiomics_mediation", "07_radiomics_mediation/natural_effects.csv",
             "CSV: natural indirect/direct effects (risk differences per contrast) with quasi-Bayesian intervals, "
             "one row per exposure and candidate mediator (BH over features x exposures)"),
    Artifact("method_comparison", "07_radiomics_mediation", "07_radiomics_mediation/method_comparison.csv",
             "CSV: the paper's call beside the natural-effect call, with the reason they differ "
             "(stats.compare_methods), one row per exposure and candidate mediator"),
    Artifact("sensitivity", "07_radiomics_mediation", "07_radiomics_mediation/sensitivity.csv",
             "CSV: rho at which each reported natural indirect effect (and its interval) reaches zero "
             "(stats.sensitivity), one row per significant exposure and mediator"),
    Artifact("validation", "07_radiomics_mediation", "07_radiomics_mediation/validation.csv",
             "CSV: simulation validation: coverage, bias, FDR, FWER, power per scenario and method, with Monte "
             "Carlo SE (stats.validation.summarise_study)"),
    Artifact("slice_features", "07_radiomics_mediation", "07_radiomics_mediation/semiseg_slice_features.csv",
             "CSV: radiomics per slice and region"),
    Artifact("sem_estimates", "07_radiomics_mediation", "07_radiomics_mediation/sem_estimates.csv",
             "CSV: SEM path estimates"),
    Artifact("ictcf_class_maps", "07_radiomics_mediation", "07_radiomics_mediation/ictcf_class_maps.npz",
             MAPS + ": class labels of the iCTCF CT slices (stage 1 + multi SSInfNet, inside the lungs)",
             when="ictcf_images"),
    Artifact("ictcf_phenotypes", "07_radiomics_mediation", "07_radiomics_mediation/ictcf_phenotypes.csv",
             "CSV: one row per iCTCF patient with images: clinical columns and <region>_<feature> means",
             when="ictcf_images"),
)


class UndeclaredArtifact(KeyError):
    """A stage wrote or read a name the contract does not declare for it (a programming error)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class MissingArtifact(FileNotFoundError):
    """A declared artifact is not in this run folder: the message names the chapter to run."""


def declared(name: str, writer: str | None = None) -> tuple[Artifact, dict]:
    """The artifact ``name`` refers to (of ``writer`` when given) and its template fields.

    UndeclaredArtifact lists the declared names when none matches.
    """
    for art in ARTIFACTS:
        fields = art.matches(name)
        if fields is not None and (writer is None or art.writer == writer):
            return art, fields
    names = sorted({a.name for a in ARTIFACTS if writer is None or a.writer == writer})
    raise UndeclaredArtifact(f"artifact {name!r} is not declared{f' for stage {writer!r}' if writer else ''} "
                             f"in ssinfnet/book/artifacts.py (declared: {', '.join(names)})")


def record(ctx, stage: str, artifacts: dict[str, str | Path], **info) -> dict:
    """Record what ``stage`` wrote (name -> path) in the run manifest, with ``info``.

    Every name must be declared for ``stage`` and its path must be the declared one (relative to the
    run folder) and exist: the contract, not the caller, decides where a file lives. Under torchrun
    the files are written and recorded by process 0 (:func:`ssinfnet.training.distributed.on_main`),
    so the others check names and paths only.
    """
    from ..training.distributed import is_main

    if stage not in STAGE_NAMES.values():
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_NAMES.values())}")
    for name, path in artifacts.items():
        art, fields = declared(name, writer=stage)
        want = (ctx.run_dir / art.path.format(**fields)).resolve()
        got = Path(path).resolve()
        if got != want:
            raise ValueError(f"stage {stage} wrote {name!r} to {got}, but the contract says {want}")
        if is_main() and not got.exists():
            raise MissingArtifact(f"stage {stage} records {name!r} at {got}, which does not exist")
    return ctx.record(stage, artifacts, **info)


def _lookup(ctx, name: str, reader: str) -> tuple[Artifact, Path | None]:
    art, _ = declared(name)
    writers = [a for a in ARTIFACTS if a.matches(name) is not None]
    readable = [a for a in writers if reader in a.readers]
    if not readable:
        raise UndeclaredArtifact(f"stage {reader!r} reads {name!r}, but the contract lists it as a reader of "
                                 f"no artifact of that name (writers: {', '.join(a.writer for a in writers)})")
    for a in readable:
        path = ctx.artifact(a.writer, name)
        if path is not None:
            return a, path
    return _writer_of(ctx, readable, name), None


def _writer_of(ctx, candidates: list[Artifact], name: str) -> Artifact:
    """Of the artifacts ``name`` matches (e.g. ``model:{variant}`` of chapters 3 and 4), the one whose
    profile list (``per``) holds its variant, so a missing file names the chapter that writes it."""
    for a in candidates:
        if a.per is not None and a.matches(name).get("variant") in getattr(ctx.profile, a.per, ()):
            return a
    return candidates[0]


def require(ctx, name: str, reader: str) -> Path:
    """The path of artifact ``name`` for stage ``reader``; MissingArtifact names the chapter to run."""
    art, path = _lookup(ctx, name, reader)
    if path is None:
        number = art.writer[:2]
        raise MissingArtifact(f"{name!r} ({art.format}) is written by chapter {art.writer} and is not in "
                              f"{ctx.run_dir}; run that chapter first: python -m ssinfnet stage {number}")
    return path


def optional(ctx, name: str, reader: str) -> Path | None:
    """Like :func:`require`, but None when the artifact has not been written (undeclared still raises)."""
    return _lookup(ctx, name, reader)[1]


def selection(ctx) -> dict | None:
    """Chapter 5's record of the variants it handed on (artifact name -> variant, None where no model
    passed its checks), as ``05_evaluation`` wrote it in the manifest; None when that chapter has not run
    in this run folder."""
    entry = ctx.manifest().get("stages", {}).get("05_evaluation")
    return None if entry is None else dict(entry.get("selected") or {})


def expected_outputs(stage: str, profile, conditions=()) -> dict[str, str]:
    """Every artifact name ``stage`` must write under ``profile`` -> its relative path; artifacts written
    only under a condition (``Artifact.when``) are listed when ``conditions`` holds it."""
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; known: {', '.join(CONDITIONS)}")
    out = {}
    for art in ARTIFACTS:
        if art.writer != stage or (art.when is not None and art.when not in conditions):
            continue
        if art.per is None:
            out[art.name] = art.path
            continue
        seeds = profile.extra_seeds if "{seed}" in art.name else (None,)
        for variant in getattr(profile, art.per):
            for seed in seeds:
                out[art.name.format(variant=variant, seed=seed)] = art.path.format(variant=variant, seed=seed)
    return out

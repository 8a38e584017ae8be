"""Command line: ``python -m ssinfnet <command>``; every command calls the same functions as the notebooks.

Commands: ``run`` (execute the book with papermill), ``stage NN`` (run one chapter's computation without
its notebook), ``book`` (render a run), ``data locate``,
``data fetch NAME``, ``audit`` (check a run against the published run's bars), ``evaluate`` (score saved prediction maps), ``predict`` (segment images).
"""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_run(args) -> int:
    from .book.runner import run_book

    run_dir = run_book(args.profile, args.data_root, only=args.only, start=args.start, run_dir=args.run_dir,
                       progress=not args.no_progress)
    print(f"[ssinfnet] run written to {run_dir}")
    if args.book:
        from .book.render import build

        print(f"[ssinfnet] book rendered: {build(run_dir) / 'index.html'}")
    return 0


def _cmd_stage(args) -> int:
    import torch

    from .book import artifacts
    from .book.context import RunContext
    from .book.stages import run_stage, stage_number
    from .training import distributed

    number = stage_number(args.number)
    if distributed.launched() and number not in ("02", "03", "04"):
        raise ValueError(f"stage {number} does not train; under torchrun only the training stages 02, 03 and 04 "
                         f"run: run `python -m ssinfnet stage {number}` without torchrun")
    overrides = {} if args.fit_workers is None else {"fit_workers": args.fit_workers}
    ctx = RunContext.open(args.profile, args.data_root, args.run_dir, device=args.device, **overrides)
    world = distributed.join(torch.device(ctx.device))  # under torchrun: one process per GPU (or CPU share)
    if world is not None:
        world.device(torch.device(ctx.device))  # refuses --device cuda:N, before anything is trained
    try:
        run_stage(number, ctx, progress=not args.no_progress)
    finally:
        distributed.leave()
    if world is not None and not world.main:
        return 0  # process 0 reports
    stage = artifacts.STAGE_NAMES[number]
    entry = ctx.manifest().get("stages", {}).get(stage, {})
    written = entry.get("artifacts", {})
    print(f"[ssinfnet] stage {stage} done in {ctx.run_dir}")
    for name, rel in sorted(written.items()):
        print(f"  {name:<28} {rel}")
    for name, cond in sorted((a.name, a.when) for a in artifacts.ARTIFACTS if a.writer == stage and a.when):
        if name not in written:  # a conditional artifact this run did not write, and why
            print(f"  {name:<28} not written (only when {artifacts.CONDITIONS[cond]})")
    return 0


def _only_stage_under_torchrun(command: str) -> None:
    """Several processes (torchrun) train one chapter together: ``stage`` is the one command for them."""
    from .training.distributed import launched

    env = launched()
    if env is not None and command != "stage":
        raise ValueError(f"under torchrun ({env[1]} processes) only `stage NN` runs; "
                         f"run `python -m ssinfnet {command}` without torchrun")


def _cmd_book(args) -> int:
    from .book.render import build
    from .book.context import RUNS_DIR

    html = build(args.run_dir or RUNS_DIR / args.profile)
    print(f"[ssinfnet] book rendered: {html / 'index.html'}")
    return 0


def _cmd_audit(args) -> int:
    from .book.audit import audit_run_dir, format_checks
    from .book.context import RUNS_DIR

    run_dir = args.run_dir or RUNS_DIR / args.profile
    checks = audit_run_dir(run_dir)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=1))
    else:
        print(f"audit of {run_dir}\n")
        print(format_checks(checks))
    return 0 if all(c.passed for c in checks) else 1


def _cmd_refresh(args) -> int:
    from .book.context import NOTEBOOKS_DIR
    from .book.runner import list_notebooks, select_notebooks

    for p in select_notebooks(list_notebooks(NOTEBOOKS_DIR), only=args.only):
        from .book.runner import refresh_outputs

        refresh_outputs([p])
        print(f"[ssinfnet] refreshed stored outputs of {p.name}")
    return 0


def _cmd_predict(args) -> int:
    from .segmentation.folders import main as predict_main

    return predict_main(args)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so a bad value is refused before anything is loaded or made)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _cmd_locate(args) -> int:
    from .data.sources import RUN_REQUIRES, locate, resolve_data_root

    root = resolve_data_root(args.data_root)
    print(f"data root: {root.describe()}")
    for row in locate(root):
        print(f"  {row['state']:<10} {row['source']:<16} {row['path'] or '-'}")
        for part in row["missing"]:
            print(f"      missing {part}")
    if not root.synthetic:
        print(f"a run needs {', '.join(RUN_REQUIRES)} found; the other sources are optional")
    return 0


def _cmd_fetch(args) -> int:
    from .data.sources import PROJECT_DATA, fetch

    dest = fetch(args.name, args.data_root or PROJECT_DATA)
    print(f"{args.name}: ready at {dest}")
    return 0


def _profile_names() -> list[str]:
    from .book.profiles import PROFILES

    return list(PROFILES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ssinfnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run", help="execute the notebooks in order with papermill",
        description="Execute the chapters with papermill into the run folder. The options and the data root "
                    "are checked before the run folder is created: a real data root needs COVID-SemiSeg "
                    "complete (see `data locate`); iCTCF and MedSeg are optional.",
        epilog="exit codes: 0 the run was written; 2 a bad option or an incomplete data root (one error line, "
               "nothing created); a chapter that fails stops the run with papermill's error (1).")
    p.add_argument("--profile", default="smoke", choices=_profile_names())
    p.add_argument("--data-root", default=None, help="data root (default: $SSINFNET_DATA, data/, synthetic)")
    p.add_argument("--only", default=None, help="run one chapter, e.g. 03")
    p.add_argument("--from", dest="start", default=None, help="run this chapter and the later ones")
    p.add_argument("--run-dir", default=None,
                   help="output folder (default runs/<profile>, or runs/<profile>-synthetic on the embedded default)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--book", action="store_true", help="render the run's book to _build/html afterwards")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "stage", help="run one chapter's stage (its training or analysis) without the notebook",
        description="Compute one chapter's results into the run folder and record its artifacts: the same "
                    "function its notebook calls. A stage reads what earlier chapters wrote; a missing input "
                    "names the chapter to run first. `torchrun --nproc-per-node N -m ssinfnet stage NN ...` "
                    "trains on N GPUs (or N CPU processes) together (README, 'Several GPUs').",
        epilog="stages: 01 data, 02 pretraining, 03 single, 04 multi, 05 evaluation, 06 severity, "
               "07 statistics. Exit codes: 0 done; 2 a bad option, data root or missing input (one error line).")
    p.add_argument("number", help="chapter number or name, e.g. 03 or single")
    p.add_argument("--profile", default="smoke", choices=_profile_names())
    p.add_argument("--data-root", default=None, help="data root (default: $SSINFNET_DATA, data/, synthetic)")
    p.add_argument("--run-dir", default=None,
                   help="run folder (default runs/<profile>, or runs/<profile>-synthetic on the embedded default)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--fit-workers", type=_positive_int, default=None,
                   help="fine-tuning runs of stages 03 and 04 trained at once, each in its own process "
                        "(default: the profile's; README, 'Several fits at once')")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_stage)

    p = sub.add_parser("book", help="render the executed notebooks of a run to _build/html")
    p.add_argument("--profile", default="cpu", help="renders runs/<profile> (default: the published cpu run)")
    p.add_argument("--run-dir", default=None, help="render this run folder instead")
    p.set_defaults(func=_cmd_book)

    p = sub.add_parser("audit", help="check a run against the bars set for the published run",
                       description="Reads the run's manifest and artifacts (nothing is re-computed): every chapter "
                                   "executed at one clean commit, the profile's time and accuracy bars, no collapsed "
                                   "model, chapters 6-7 reading models that passed, a verdict for every claim.",
                       epilog="exit codes: 0 every bar met; 1 some bar not met; 2 no readable manifest.")
    p.add_argument("--profile", default="cpu", help="audits runs/<profile> (default: the published cpu run)")
    p.add_argument("--run-dir", default=None, help="audit this run folder instead")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("refresh", help="re-execute the committed notebooks in place (smoke, synthetic) "
                                       "to update the outputs nbval checks")
    p.add_argument("--only", default=None)
    p.set_defaults(func=_cmd_refresh)

    data = sub.add_parser("data", help="find or download the public datasets").add_subparsers(
        dest="data_command", required=True)
    p = data.add_parser("locate", help="show which sources are found, incomplete or missing under the data root",
                        description="For each registered source: found (complete), incomplete (its folder "
                                    "exists; the missing parts are listed) or missing.")
    p.add_argument("--data-root", default=None)
    p.set_defaults(func=_cmd_locate)
    p = data.add_parser("fetch", help="download, verify and unpack a source")
    p.add_argument("name")
    p.add_argument("--data-root", default=None, help="where to unpack (default: the project's data/)")
    p.set_defaults(func=_cmd_fetch)

    from .evaluation import folders as _evaluate

    p = sub.add_parser("evaluate", help="score saved prediction maps against ground truth")
    _evaluate.add_arguments(p)
    p.set_defaults(func=_evaluate.main)
    p = sub.add_parser("predict", help="segment CT images with trained (exported) models",
                       description="Exit codes: 0 some slice predicted, 1 none predicted, 2 refused (nothing written).")
    p.add_argument("--checkpoint", required=True,
                   help="exported single (infection) segmentation model, e.g. runs/cpu/finetune/ssinfnet/model.pt")
    p.add_argument("--multi-checkpoint", default=None,
                   help="exported multi (GGO/consolidation) segmentation model")
    p.add_argument("--input", required=True,
                   help="an image file or a folder, read with its subfolders (png, jpg, tif, dcm, nii)")
    p.add_argument("--output", required=True,
                   help="output folder: new, empty, or written by predict before; never in the input folder")
    p.add_argument("--overwrite", action="store_true",
                   help="also write into a non-empty folder that predict did not write")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="slices per forward pass (>= 1)")
    p.add_argument("--no-lung-mask", action="store_true",
                   help="do not confine the maps to the lungs (by default predicted lesions lying mostly "
                        "outside the automatic lung mask are removed)")
    p.add_argument("--no-crop", action="store_true",
                   help="do not crop full-field slices to the body (the training slices' field of view)")
    p.add_argument("--no-rewindow", action="store_true",
                   help="do not re-window 8-bit slices whose grey levels are far from the training slices'")
    p.add_argument("--flip", action="store_true",
                   help="average each slice's prediction with that of its left-right mirror (test-time flip, "
                        "as the book's cpu and gpu profiles score; twice the inference time)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data.io import DataError

    args = build_parser().parse_args(argv)
    try:
        _only_stage_under_torchrun(args.command)
        return int(args.func(args) or 0)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from .book.runner import ChapterFailed

        if not isinstance(exc, ChapterFailed):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

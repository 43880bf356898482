"""The `skylink` command line: thin wrappers that load the config and call stages and libraries."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.log import log, setup_logging

STAGE_HELP = {
    "data": "generate the synthetic world (or take data.root) and validate and index it",
    "reconstruct": "COLMAP SfM per training building: aligned sparse model, scale{1,2,3}.ply, quality.json "
                   "(or, with --images/--out, one scene from any folder of images)",
    "render": "render each building's point clouds into colour/depth/height views and a DSM",
    "enhance": "GREM: rank the google images of each building against its street images, keep the best",
    "train": "train the Siamese PAFA network aligned against the 3D renders",
    "index": "embed query and gallery images and build the faiss index",
    "evaluate": "University-1652 metrics (R@1/5/10, R@top1%%, AP), per-query ranks, answer.txt",
    "report": "the HTML report WORKDIR/report/index.html",
}


def _common(p: argparse.ArgumentParser, workdir: bool = True) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="YAML preset (default assets/configs/demo.yaml; also tiny.yaml, university1652.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set train.epochs=3 (repeatable)")
    if workdir:
        p.add_argument("--workdir", type=Path, default=None,
                       help="where stage artifacts are cached (default work/<config name>)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes for per-building work")
    p.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="run per-building work in a local process pool (default) or on Ray")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (e.g. ray://host:10001)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _debug_flag(p)


def _debug_flag(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    # Accepted before and after the command; SUPPRESS keeps a subcommand from resetting the global one.
    p.add_argument("--debug", action="store_true", default=default,
                   help="show the Python traceback of an error (errors are one line otherwise)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skylink",
        description="SkyLink: street-to-satellite geo-localization bridged by multi-scale UAV 3D scenes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Stages in order: data reconstruct render enhance train index evaluate report.\n"
               "Example: skylink run --config assets/configs/tiny.yaml --workdir work/tiny",
    )
    _debug_flag(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a synthetic world in the University-1652 layout")
    _common(p, workdir=False)
    p.add_argument("--out", type=Path, required=True, help="output dataset folder")
    p.add_argument("--preview", action="store_true", help="also write contact sheets under meta/preview/")

    p = sub.add_parser("validate", help="check a dataset tree and list every problem with its path")
    p.add_argument("root", type=Path, help="a University-1652 or UAVM2025 tree")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every image (faster, weaker)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _debug_flag(p)

    p = sub.add_parser("run", help="run the pipeline (cached stages are skipped)")
    _common(p)
    p.add_argument("--until", default="report", help="last stage to run (default report)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="recompute this stage even if cached (repeatable); later stages recompute "
                        "where its outputs changed")

    for name, text in STAGE_HELP.items():
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        p.add_argument("--force", action="store_true", help="recompute even if cached")
        if name == "reconstruct":
            p.add_argument("--images", type=Path, help="reconstruct one scene from this folder of images")
            p.add_argument("--out", type=Path, help="output folder for --images")
        if name == "train":
            p.add_argument("--resume", action="store_true", default=True,
                           help="continue from the last checkpoint in WORKDIR/train (default)")

    p = sub.add_parser("rebuild-3d", help="rebuild the 3D cache (reconstruct + render) for a new or changed region")
    _common(p)
    p.add_argument("--region", type=Path, required=True, help="University-1652-layout folder of the region")

    p = sub.add_parser("inspect", help="open a building's point cloud in Open3D, framed on the building")
    _common(p)
    p.add_argument("building", help="building id, e.g. 0003")
    p.add_argument("--scale", type=int, default=1, choices=(1, 2, 3), help="which altitude scale (default 1)")
    p.add_argument("--screenshot", type=Path, default=None, help="render a PNG headless instead of opening a window")
    p.add_argument("--frustums", action="store_true", help="draw the camera frustums (the view pulls back to hold them)")
    p.add_argument("--sparse", action="store_true", help="show the sparse cloud beside the dense one")
    p.add_argument("--mesh", action="store_true", help="show the mesh (mesh.ply) beside the clouds, where one was built")

    p = sub.add_parser("export-answer", help="write the UAVM2025 submission answer.zip from the evaluate stage")
    _common(p)
    p.add_argument("--out", type=Path, default=Path("answer.zip"), help="zip file to write (default answer.zip)")

    p = sub.add_parser("ablate", help="train and evaluate the ablation variants (full, no 3D, GeM, no GREM, "
                       "the self-supervised term switched, no hard negatives, no drone pairs)")
    _common(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--variants", default="full,no3d,gem,nogrem,nossl,ssl,nohard,nodrone",
                   help="comma-separated variants (one that equals the full model under the config is skipped)")
    p.add_argument("--no-report", action="store_true",
                   help="stop after the table; do not train the main work dir's model to rebuild its report")
    return parser


def _load(args):
    from pipeline.config import load_config, validate_config

    cfg = load_config(args.config, args.overrides)
    if getattr(args, "workers", None) is not None:
        cfg.executor.workers = args.workers
    if getattr(args, "executor", None):
        cfg.executor.kind = args.executor
    if getattr(args, "ray_address", None):
        cfg.executor.ray_address = args.ray_address
        cfg.executor.kind = "ray"
    validate_config(cfg, "command line")  # the flags above set config values too
    workdir = getattr(args, "workdir", None) or Path("work") / cfg.name
    return cfg, Path(workdir)


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 on success; an error a user can cause (pipeline.errors.USER_ERRORS) is one line on
    stderr and status 1 (`--debug`: its traceback). Any other exception is a bug in SkyLink and keeps
    its traceback, which is what a bug report needs."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    setup_logging(getattr(args, "verbose", False) or debug)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        log.error("interrupted; finished work is kept, run the same command again to resume")
        return 130
    except Exception as e:
        from pipeline.errors import USER_ERRORS, one_line

        if isinstance(e, USER_ERRORS) and not debug:
            print(f"skylink: error: {one_line(e)}", file=sys.stderr)
            return 1
        raise


def _dispatch(args) -> int:
    from pipeline import commands

    cmd = args.command
    if cmd == "validate":
        return commands.validate(args.root, decode=not args.no_decode)
    cfg, workdir = _load(args)
    if cmd == "synth":
        return commands.synth(cfg, args.out, args.preview)
    if cmd == "run":
        return commands.run_pipeline(cfg, workdir, until=args.until, force=args.force)
    if cmd == "reconstruct" and args.images:
        if not args.out:
            raise SystemExit("skylink reconstruct: --images needs --out")
        return commands.reconstruct_folder(cfg, args.images, args.out)
    if cmd in STAGE_HELP:
        return commands.run_one_stage(cfg, workdir, cmd, force=args.force)
    if cmd == "rebuild-3d":
        return commands.rebuild_3d(cfg, workdir, args.region)
    if cmd == "inspect":
        return commands.inspect(workdir, args.building, args.scale, args.screenshot, frustums=args.frustums,
                                sparse=args.sparse, mesh=args.mesh)
    if cmd == "export-answer":
        return commands.export_answer(workdir, args.out)
    if cmd == "ablate":
        return commands.ablate(cfg, workdir, seeds=args.seeds, variants=args.variants.split(","),
                               report=not args.no_report)
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

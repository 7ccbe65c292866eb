"""The ``monai-fusion`` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success, 2 user error (bad input or output; one line on stderr, no traceback),
1 internal error (a bug: one line, the traceback with ``--debug``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
import warnings

from monai_fusion import __version__
from monai_fusion.errors import MonaiFusionError

__all__ = ["main", "build_parser"]

PROG = "monai-fusion"


def _cmd_info(args) -> int:
    from monai_fusion.io.describe import describe_path, format_table

    rows = describe_path(args.path)
    if args.json:
        print(json.dumps({"path": str(args.path), "images": rows}, indent=2, default=str))
    else:
        print(format_table(rows))
    if all(row.get("problem") for row in rows):
        raise MonaiFusionError(f"no image in {args.path} could be read: {rows[0]['problem']}")
    return 0


def _cmd_demo(args) -> int:
    from monai_fusion.workflows.demo import run_demo
    from monai_fusion.workflows.fuse import run_summary

    result = run_demo(args.out)
    if args.json:
        print(json.dumps({"out_dir": str(result.out_dir), "tre_mean_mm": result.tre_mean_mm, "tre_max_mm": result.tre_max_mm,
                          "round_trips": result.rows, "seconds": result.seconds, **run_summary(result.run)}, indent=2))
        return 0
    print("monai-fusion demo: MRI-PET fusion, end to end. The MRI is REAL (nilearn's bundled MNI152 T1 template);")
    print("the PET is SIMULATED from nilearn's grey/white-matter maps, moved by a known rigid transform")
    print("(8 degrees, 10 mm) and sampled on its own 3 mm grid.\n")
    metrics = result.run.report["metrics"]
    print(f"registration error vs the known transform (brain voxels): mean {result.tre_mean_mm:.2f} mm, "
          f"max {result.tre_max_mm:.2f} mm")
    print("fusion metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    print("\noutputs read back (affine vs the MRI's):")
    print(result.table())
    print(f"\noutputs in {result.out_dir.resolve()}  ({result.seconds:.1f} s)")
    print(f"QC report: {(result.out_dir / 'report.html').resolve()}")
    return 0


def _cmd_evaluate(args) -> int:
    from monai_fusion.workflows.evaluate import cases_from_datalist, cases_from_folders, evaluate_cases, write_evaluation

    if args.datalist and (args.a or args.b or args.fused):
        raise MonaiFusionError("give either --datalist or --a/--b/--fused, not both")
    if args.datalist:
        cases = cases_from_datalist(args.datalist)
    elif args.a and args.b and args.fused:
        cases = cases_from_folders(args.a, args.b, args.fused)
    else:
        raise MonaiFusionError("give --datalist FILE, or all three of --a DIR --b DIR --fused DIR")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = evaluate_cases(cases, metrics=metrics, convention=args.convention, progress=not args.no_progress and not args.json)
    paths = write_evaluation(result, args.out, args.convention)
    if args.json:
        print(json.dumps({"summary": result.summary(), "failures": result.failures,
                          "files": {k: str(v) for k, v in paths.items()}}, indent=2))
    else:
        print(f"{len(result.rows)} case(s), convention '{args.convention}', {result.seconds:.1f} s\n")
        print(result.summary_table())
        print(f"\nper-case values: {paths['cases']}\nsummary: {paths['summary']}")
    for failure in result.failures:
        print(f"{PROG}: case {failure['case']} failed: {failure['error']}", file=sys.stderr)
    if result.failures and not result.rows:
        raise MonaiFusionError(f"no case could be evaluated ({len(result.failures)} failed)")
    return 2 if result.failures else 0


def _cmd_fuse(args) -> int:
    from monai_fusion.io.dicomweb import dicomweb_inputs, store_outputs, store_target
    from monai_fusion.workflows.fuse import format_summary, fuse, run_summary
    from monai_fusion.workflows.fuse_inputs import inputs_from_options

    fixed, moving, task = inputs_from_options(args.fixed, args.moving, args.mri, args.ct, args.pet, args.spect, args.task)
    store_url = store_target(args.store_to, args.dicomweb, args.format)
    with dicomweb_inputs((fixed, moving), args.dicomweb, args.dicomweb_cache) as (fixed, moving):
        run = fuse(fixed, moving, task=task, method=args.method, registration=args.registration, out_dir=args.out,
                   formats=args.format, reference=args.reference, threads=args.threads, progress=not args.json,
                   qc=not args.no_qc, overwrite=args.overwrite,
                   registration_options={"orientation_search": "off"} if args.no_orientation_search else None)
    stored = store_outputs(run.outputs, store_url) if store_url else None
    summary = run_summary(run) | ({"stored": stored.summary()} if stored else {})
    print(json.dumps(summary, indent=2) if args.json else format_summary(run) + (f"\n{stored.line()}" if stored else ""))
    return 0


def _rule_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    for convert in (int, float):
        try:
            return key.strip(), convert(value)
        except ValueError:
            pass
    return key.strip(), {"true": True, "false": False}.get(value.lower(), value)


def _cmd_fuse_rule(args) -> int:
    from monai_fusion.workflows.fuse_rule import fuse_rule_files

    output = fuse_rule_files(args.a, args.b, args.out, method=args.method, weight_path=args.weight,
                             normalize=args.normalize, clip=not args.no_clip, **dict(args.option or []))
    summary = {"fused": str(output.fused), "weight": str(output.weight) if output.weight else None,
               "method": output.method, "colour": output.colour, "shape": list(output.shape),
               "mean_weight_of_a": round(output.weight_of_a, 4)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        kind = "colour (luma fused, chroma kept)" if output.colour else "grey"
        print(f"fused {kind} with {output.method}: {output.fused}"
              + (f"\nweight map of A: {output.weight}" if output.weight else "")
              + f"\nmean weight of A: {output.weight_of_a:.3f}")
    return 0


def _cmd_batch(args) -> int:
    from monai_fusion.workflows.batch import cases_from_batch_datalist, load_case_function, run_batch

    formats = [name for value in args.format or [] for name in value.split(",") if name.strip()] or None
    defaults = {"task": args.task, "method": args.method, "registration": args.registration, "formats": formats,
                "orientation_search": "off" if args.no_orientation_search else None}
    cases = cases_from_batch_datalist(args.datalist, defaults)
    function = load_case_function(args.case_function) if args.case_function else None
    result = run_batch(cases, args.out, workers=args.workers, scheduler=args.scheduler, case_function=function,
                       progress=not args.json)
    print(json.dumps(result.as_json(), indent=2) if args.json else result.report())
    for row in result.failures:
        print(f"{PROG}: case {row['id']} failed: {row['error']}", file=sys.stderr)
    return 2 if result.failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Multimodal medical image fusion for MONAI.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    info = commands.add_parser("info", help="describe the images or DICOM series at a path")
    info.add_argument("path", help="NIfTI/NRRD/MHA file, DICOM file or folder")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(run=_cmd_info)

    evaluate = commands.add_parser("evaluate", help="fusion-quality metrics over (A, B, fused) cases")
    evaluate.add_argument("--a", help="folder of source-A images")
    evaluate.add_argument("--b", help="folder of source-B images")
    evaluate.add_argument("--fused", help="folder of fused images (matched to A and B by file name)")
    evaluate.add_argument("--datalist", help="JSON or CSV datalist with a, b, fused (and optional case) entries")
    evaluate.add_argument("--out", default="evaluation", help="output folder for metrics.csv and summary.csv")
    evaluate.add_argument("--metrics", help="comma-separated metric names (default: all)")
    evaluate.add_argument("--convention", default="default",
                          help="metric convention: 'default' or 'benchmark' (reproduces CDDFuse-era tables)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(run=_cmd_evaluate)

    from monai_fusion.workflows.fuse_rule import NORMALISATIONS

    rule = commands.add_parser("fuse-rule", help="fuse two co-registered images with a classical rule")
    rule.add_argument("a", help="source A (the anatomical image, e.g. MRI)")
    rule.add_argument("b", help="source B (CT, or PET/SPECT, grey or pseudo-colour RGB)")
    rule.add_argument("--out", required=True, help="fused image: .png (2D), .nii.gz or .nrrd")
    rule.add_argument("--method", default="laplacian_pyramid", help="rule name (default laplacian_pyramid)")
    rule.add_argument("--weight", help="also write the per-voxel weight of A here (.png, .nii.gz, .nrrd)")
    rule.add_argument("--normalize", default="percentile", choices=NORMALISATIONS,
                      help="intensity scaling of non-8-bit inputs to 0..1 (default percentile 0.5..99.5)")
    rule.add_argument("--no-clip", action="store_true", help="keep fused values outside 0..1")
    rule.add_argument("--option", action="append", type=_rule_option, metavar="KEY=VALUE",
                      help="rule option, e.g. --option levels=3 (repeatable)")
    rule.add_argument("--json", action="store_true", help="machine-readable output")
    rule.set_defaults(run=_cmd_fuse_rule)

    fuse = commands.add_parser("fuse", help="register and fuse two images end to end (outputs, QC report, metrics)")
    fuse.add_argument("--fixed", help="the reference image (MRI by default): DICOM folder/file, NIfTI, NRRD, MHA")
    fuse.add_argument("--moving", help="the image registered to it (CT, PET or SPECT)")
    fuse.add_argument("--mri", help="the MRI (reference); with one of --ct, --pet, --spect, which set the task")
    fuse.add_argument("--ct", help="the CT (task ct-mri)")
    fuse.add_argument("--pet", help="the PET (task mri-pet)")
    fuse.add_argument("--spect", help="the SPECT (task mri-spect)")
    fuse.add_argument("--task", help="ct-mri (default with --fixed/--moving), mri-pet or mri-spect")
    fuse.add_argument("--method", default="laplacian_pyramid", help="fusion method (default laplacian_pyramid)")
    fuse.add_argument("--registration", default="rigid", help="rigid (default), affine, deformable or none")
    fuse.add_argument("--no-orientation-search", action="store_true",
                      help="start the registration from the scanners' pose only (default: also try the 24 "
                           "axis-aligned rotations, for images scanned in different positions)")
    fuse.add_argument("--reference", default="fixed", choices=("fixed", "moving"), help="grid to fuse on (default fixed)")
    fuse.add_argument("--out", required=True, help="output folder (written atomically; must be new or empty)")
    fuse.add_argument("--format", default="nifti", help="output formats, comma-separated: nifti,nrrd,dicom (default nifti)")
    fuse.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's setting)")
    fuse.add_argument("--no-qc", action="store_true", help="no QC montage and HTML report")
    fuse.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder once the new one is complete")
    fuse.add_argument("--json", action="store_true", help="machine-readable summary on stdout, no progress bar")
    fuse.add_argument("--dicomweb", metavar="URL", help="DICOMweb server for inputs given as dicomweb:SERIES_UID or "
                      "dicomweb:study=UID,modality=MR (default $MONAI_FUSION_DICOMWEB_URL; see docs/dicomweb.md)")
    fuse.add_argument("--dicomweb-cache", metavar="DIR", help="keep and reuse downloaded series here (default: a temporary folder)")
    fuse.add_argument("--store-to", metavar="URL", nargs="?", const="",
                      help="store the DICOM outputs on this DICOMweb server (STOW-RS); without URL: the --dicomweb server")
    fuse.set_defaults(run=_cmd_fuse)

    batch = commands.add_parser("batch", help="fuse every case of a datalist: parallel, resumable, exactly once")
    batch.add_argument("datalist", help="JSON or CSV datalist: id, fixed|mri, moving|ct|pet|spect, "
                                        "optional task, method, registration, formats (see docs/batch.md)")
    batch.add_argument("--out", required=True, help="output folder: a folder per case, manifest.jsonl, summary.csv; "
                                                    "rerun with the same folder to resume")
    batch.add_argument("--workers", type=int, help="cases run in parallel (default: half the cores, at most 4)")
    batch.add_argument("--scheduler", default="processes",
                       help="processes (local process pool, default; alias local), dask-local (a Dask LocalCluster) "
                            "or the address of a Dask scheduler, tcp://HOST:PORT")
    batch.add_argument("--task", help="default task for cases that name none (ct-mri, mri-pet, mri-spect)")
    batch.add_argument("--method", help="default fusion method")
    batch.add_argument("--registration", help="default registration (e.g. rigid, none)")
    batch.add_argument("--no-orientation-search", action="store_true",
                       help="default for cases without an orientation_search column: start the registration "
                            "from the scanners' pose only")
    batch.add_argument("--format", action="append", help="output format(s), comma-separated or repeated (default nifti)")
    batch.add_argument("--json", action="store_true", help="machine-readable summary on stdout, no progress bar")
    batch.add_argument("--case-function", help=argparse.SUPPRESS)  # module:function, for tests and experiments
    batch.set_defaults(run=_cmd_batch)

    demo = commands.add_parser("demo", help="run the built-in demo case (no data needed)")
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(run=_cmd_demo)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (``sys.exit(main())`` in the console script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    if not args.debug:
        warnings.showwarning = _show_warning
        logging.getLogger("monai").setLevel(logging.ERROR)
    try:
        return args.run(args)
    except MonaiFusionError as err:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so in one line unless asked for the traceback
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

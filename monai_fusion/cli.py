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

    result = run_demo(args.out)
    if args.json:
        print(json.dumps({"out_dir": str(result.out_dir), "outputs": result.rows, "seconds": result.seconds}, indent=2))
        return 0
    print("monai-fusion demo: the real MNI152 T1 (bundled with nilearn) and a SIMULATED PET-like colour map,")
    print("written in every output format and read back.\n")
    print(result.table())
    print(f"\noutputs in {result.out_dir.resolve()}  ({result.seconds:.1f} s)")
    print(f"inspect them with: {PROG} info {result.out_dir / 't1_dicom'}")
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

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

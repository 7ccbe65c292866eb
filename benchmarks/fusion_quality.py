"""Every classical fusion rule on the Harvard atlas pairs: all metrics, one table per task.

    python benchmarks/fusion_quality.py                       # all pairs, all rules, all metrics
    python benchmarks/fusion_quality.py --max-pairs 10 --metrics EN,SD,SF,MI,SCD,VIF,Qabf,SSIM

Protocol (the CDDFuse-era one): the MRI is source A, the CT / PET / SPECT source B; colour
PET/SPECT are converted to YCbCr and only Y is fused with the MRI; metrics are computed in the
``benchmark`` convention on grey images (luma of colour ones) on the 0..255 scale. Rules run on
0..1 data. Time per slice is the median wall time of the rule (plus the colour conversion for
PET/SPECT) on a 256x256 pair with the given number of torch threads.

The published rows printed under each table (CDDFuse, IFCNN; from ../shared/GUIDE.md §4) were
measured on those papers' own test subsets of the atlas, not necessarily on the pairs used here:
read them as the scale to beat, not as a same-data comparison.

Real data is read from ../shared/data/harvard; without it the script says so and exits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_fusion.io import load_image  # noqa: E402
from monai_fusion.metrics import METRICS, compute_metrics  # noqa: E402
from monai_fusion.rules import RULES, fuse, rgb_to_ycbcr  # noqa: E402

TASKS = {"ct-mri": ("mri", "ct"), "pet-mri": ("mri", "pet"), "spect-mri": ("mri", "spect")}
TABLE_METRICS = ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"]
PUBLISHED = {  # GUIDE §4, CDDFuse conventions: EN / SD / SF / MI / SCD / VIF / Qabf / SSIM
    "ct-mri": {"CDDFuse (published)": [4.88, 79.17, 38.14, 2.61, 1.41, 0.61, 0.68, 1.34],
               "IFCNN (published)": [4.53, 72.9, 34.9, 2.20, 1.31, 0.48, 0.63, 1.33]},
    "pet-mri": {"CDDFuse (published)": [4.23, 70.73, 29.57, 2.03, 1.69, 0.71, 0.71, 1.49],
                "IFCNN (published)": [3.96, 65.6, 29.1, 1.74, 1.57, 0.55, 0.64, 1.50]},
    "spect-mri": {"CDDFuse (published)": [3.90, 58.31, 20.87, 2.49, 1.35, 0.97, 0.78, 1.48],
                  "IFCNN (published)": [3.70, 53.3, 20.5, 1.75, 1.05, 0.60, 0.69, 1.49]},
}


def load_pair(folder: Path, mri_name: str, other_name: str, case: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """MRI (1, I, J) and the other source (1 or 3, I, J), float on 0..1; True when the other is colour."""
    mri = load_image(folder / mri_name / case).as_tensor().double() / 255.0
    other = load_image(folder / other_name / case)
    colour = other.shape[0] == 3
    return mri, other.as_tensor().double() / 255.0, colour


def fuse_pair(mri: torch.Tensor, other: torch.Tensor, colour: bool, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused grey on 0..1, grey version of the other source on 0..1)."""
    other_grey = rgb_to_ycbcr(other, max_value=1)[0:1] if colour else other
    return fuse(mri, other_grey, method=method).fused, other_grey


def run_task(data: Path, task: str, rules: list[str], metrics: list[str], max_pairs: int | None) -> tuple[dict, dict, int]:
    mri_name, other_name = TASKS[task]
    folder = data / task
    cases = sorted(p.name for p in (folder / mri_name).glob("*.png") if (folder / other_name / p.name).exists())
    cases = cases[:max_pairs] if max_pairs else cases
    values = {rule: {m: [] for m in metrics} for rule in rules}
    times = {rule: [] for rule in rules}
    for case in cases:
        mri, other, colour = load_pair(folder, mri_name, other_name, case)
        for rule in rules:
            start = time.perf_counter()
            fused, other_grey = fuse_pair(mri, other, colour, rule)
            times[rule].append(time.perf_counter() - start)
            result = compute_metrics(mri[0].numpy() * 255, other_grey[0].numpy() * 255,
                                     fused[0].clamp(0, 1).numpy() * 255, names=metrics, convention="benchmark")
            for m in metrics:
                values[rule][m].append(result[m])
    return values, times, len(cases)


def format_table(task: str, values: dict, times: dict, metrics: list[str], n_pairs: int) -> str:
    header = "| rule | " + " | ".join(metrics) + " | ms/slice |"
    lines = [f"### {task} ({n_pairs} pairs, benchmark convention)", "", header, "|" + "---|" * (len(metrics) + 2)]
    for rule, per_metric in values.items():
        cells = [f"{np.mean(per_metric[m]):.3f}" for m in metrics]
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {1000 * statistics.median(times[rule]):.1f} |")
    for name, numbers in PUBLISHED[task].items():
        by_metric = dict(zip(TABLE_METRICS, numbers))
        cells = [f"{by_metric[m]:.2f}" if m in by_metric else "" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "harvard"))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        print(f"Harvard atlas pairs not found at {data}; pass --data", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    metrics = [m for m in args.metrics.split(",") if m]
    tables = []
    for task in args.tasks.split(","):
        start = time.perf_counter()
        values, times, n = run_task(data, task, args.rules.split(","), metrics, args.max_pairs)
        tables.append(format_table(task, values, times, metrics, n))
        print(tables[-1] + f"\n\n({time.perf_counter() - start:.0f} s, torch threads {args.threads})\n", flush=True)
    if args.out:
        Path(args.out).write_text("\n\n".join(tables) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

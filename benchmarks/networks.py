"""Our fusion networks against the classical rules on the Harvard validation patients.

    python benchmarks/networks.py                        # all tasks, all metrics, all rules
    python benchmarks/networks.py --tasks ct-mri --metrics EN,SD,SF,MI,SCD,VIF,Qabf,SSIM
    python benchmarks/networks.py --montage docs/images  # also save one montage per task
    python benchmarks/networks.py --ceilings             # which published values anything reaches here
    python benchmarks/networks.py --tasks ct-mri --rules maximum --adversarial 0.1   # the DDcGAN-style term's effect

Protocol (the CDDFuse-era one, as ``benchmarks/fusion_quality.py``): MRI is source A, CT / PET /
SPECT source B; colour PET/SPECT are converted to YCbCr and only the luma is fused; every fused
image is **rounded to 8 bits** first (the published tables evaluate saved PNGs; several metrics,
SSIM with ``data_range=2`` above all, react to sub-grey-level noise that a PNG would not keep),
then all metrics are computed in the ``benchmark`` convention on the 0..255 scale. Only the
validation patients of the shipped networks are used (CT-MRI 37, PET-MRI 30, SPECT-MRI 4 and 35;
the networks never saw them).

Also reported: parameters, multiply-accumulates per 256x256 slice (torch's FLOP counter / 2), the
median time per 256x256 slice and per 3D volume (the 2 mm T1 template, 91 axial slices, and the
same upsampled to 1 mm / 182 slices of 182x218) with 1 and 2 torch threads, networks and rules alike.

Networks: ``DetailFusionNet`` with the shipped weights of each task (our flagship), and, with
``--baselines STEPS``, an ``IFCNNStyleNet`` and an ``EncoderFusionNet`` (our pretrained encoder)
trained here for STEPS steps with the same loss and data, for a same-budget comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_fusion.io import load_image  # noqa: E402
from monai_fusion.metrics import METRICS, compute_metrics  # noqa: E402
from monai_fusion.networks import (  # noqa: E402
    DetailFusionNet,
    EncoderFusionNet,
    IFCNNStyleNet,
    fuse_with_network,
    load_fusion_encoder,
)
from monai_fusion.networks.detail_fusion import load_detail_fusion  # noqa: E402
from monai_fusion.rules import RULES, fuse, rgb_to_ycbcr, ycbcr_to_rgb  # noqa: E402

TASKS = {"ct-mri": ("ct-mri", "ct"), "mri-pet": ("pet-mri", "pet"), "mri-spect": ("spect-mri", "spect")}
VALIDATION = {"ct-mri": ("37",), "mri-pet": ("30",), "mri-spect": ("4", "35")}
PUBLISHED = {  # GUIDE §4, CDDFuse conventions: EN / SD / SF / MI / SCD / VIF / Qabf / SSIM
    "ct-mri": [4.88, 79.17, 38.14, 2.61, 1.41, 0.61, 0.68, 1.34],
    "mri-pet": [4.23, 70.73, 29.57, 2.03, 1.69, 0.71, 0.71, 1.49],
    "mri-spect": [3.90, 58.31, 20.87, 2.49, 1.35, 0.97, 0.78, 1.48],
}
TABLE_METRICS = ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"]


class EncoderPairNet(torch.nn.Module):
    """``EncoderFusionNet`` with the bundle input layout ``(N, 2, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = EncoderFusionNet(encoder=load_fusion_encoder())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image[:, 0:1], image[:, 1:2]).clamp(0, 1)


def load_pairs(data: Path, task: str, patients) -> tuple[list[str], torch.Tensor, list[torch.Tensor]]:
    """Case names, ``(N, 2, 256, 256)`` MRI + grey/luma pairs on 0..1, and the colour sources (or [])."""
    folder_name, other = TASKS[task]
    folder = data / folder_name
    cases = sorted(p.name for p in (folder / "mri").glob("*.png")
                   if p.stem[:-3] in patients and (folder / other / p.name).exists())
    pairs, colours = [], []
    for case in cases:
        mri = load_image(folder / "mri" / case).as_tensor().float() / 255.0
        source = load_image(folder / other / case).as_tensor().float() / 255.0
        if source.shape[0] == 3:
            colours.append(source)
            source = rgb_to_ycbcr(source, max_value=1)[0:1]
        pairs.append(torch.cat([mri, source]))
    return cases, torch.stack(pairs), colours


def score(pairs: torch.Tensor, fused: torch.Tensor, metrics: list[str]) -> dict[str, float]:
    values = {m: [] for m in metrics}
    for pair, image in zip(pairs, fused):
        eight_bit = np.rint(image[0].clamp(0, 1).double().numpy() * 255.0)
        result = compute_metrics(pair[0].double().numpy() * 255.0, pair[1].double().numpy() * 255.0, eight_bit,
                                 names=metrics, convention="benchmark")
        for m in metrics:
            values[m].append(result[m])
    return {m: float(np.mean(v)) for m, v in values.items()}


def macs_per_slice(net: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        net(torch.rand(1, 2, 256, 256))
    return counter.get_total_flops() / 2.0


def median_ms(function, repeats: int = 7) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def slice_function(method, a: torch.Tensor, b: torch.Tensor):
    if isinstance(method, torch.nn.Module):
        return lambda: fuse_with_network(method, a, b)
    return lambda: fuse(a, b, method=method)


def timings(method, volume: torch.Tensor, volume_1mm: torch.Tensor, threads: int) -> tuple[float, float, float]:
    torch.set_num_threads(threads)
    plane = torch.rand(1, 256, 256)
    per_slice = median_ms(slice_function(method, plane, plane.flip(-1)))
    per_volume = median_ms(slice_function(method, volume, volume.flip(1)), repeats=3)
    per_volume_1mm = median_ms(slice_function(method, volume_1mm, volume_1mm.flip(1)), repeats=1)
    return per_slice, per_volume, per_volume_1mm


def train_baseline(net: torch.nn.Module, task: str, data: Path, steps: int, seed: int = 0, weights: dict | None = None,
                   lr: float = 1e-3) -> torch.nn.Module:
    """Same loss (``weights`` override the task's), crops and optimiser as the flagship's recipe, ``steps`` Adam steps."""
    from monai_fusion.losses import FusionLoss

    folder_name, other = TASKS[task]
    every = sorted(p.name for p in (data / folder_name / "mri").glob("*.png"))
    patients = sorted({name[:-7] for name in every} - set(VALIDATION[task]))
    _, train, _ = load_pairs(data, task, patients)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loss_fn = FusionLoss(task, weights=weights)
    optimiser = torch.optim.Adam(net.parameters(), lr)
    net.train()
    for _ in range(steps):
        index = torch.randint(len(train), (8,), generator=generator)
        y, x = torch.randint(0, 129, (2,), generator=generator).tolist()
        batch = train[index, :, y:y + 128, x:x + 128]
        loss = loss_fn(net(batch), batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.eval()


def montage(pairs: torch.Tensor, colours: list[torch.Tensor], outputs: dict[str, torch.Tensor], path: Path, rows: int = 3) -> None:
    """Rows: validation slices; columns: MRI, other source, then each method (colour products for PET/SPECT)."""
    from PIL import Image, ImageDraw

    pick = np.linspace(len(pairs) * 0.25, len(pairs) * 0.75, rows).round().astype(int)
    names = ["MRI", "source B"] + list(outputs)
    tiles = []
    for i in pick:
        row = [pairs[i, 0:1].expand(3, -1, -1), colours[i] if colours else pairs[i, 1:2].expand(3, -1, -1)]
        for fused in outputs.values():
            if colours:
                ycbcr = rgb_to_ycbcr(colours[i], max_value=1)
                row.append(ycbcr_to_rgb(torch.cat([fused[i].clamp(0, 1), ycbcr[1:]]), max_value=1).clamp(0, 1))
            else:
                row.append(fused[i].clamp(0, 1).expand(3, -1, -1))
        tiles.append(torch.cat(row, dim=2))
    picture = (torch.cat(tiles, dim=1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    header = Image.new("RGB", (picture.shape[1], 22), "white")
    draw = ImageDraw.Draw(header)
    for column, name in enumerate(names):
        draw.text((column * 256 + 6, 5), name, fill="black")
    image = Image.new("RGB", (picture.shape[1], picture.shape[0] + 22))
    image.paste(header, (0, 0))
    image.paste(Image.fromarray(picture), (0, 22))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def run_task(task: str, args, volumes) -> str:
    data = Path(args.data)
    metrics = [m for m in args.metrics.split(",") if m]
    _, pairs, colours = load_pairs(data, task, VALIDATION[task])
    methods: dict[str, object] = {"DetailFusionNet (ours)": load_detail_fusion(task)}
    if args.baselines:
        torch.set_num_threads(args.threads)
        methods["IFCNNStyleNet"] = train_baseline(IFCNNStyleNet(), task, data, args.baselines)
        methods["EncoderFusionNet"] = train_baseline(EncoderPairNet(), task, data, args.baselines)
    if args.adversarial:  # the flagship retrained the same way with and without the DDcGAN-style term
        steps = args.baselines or 300
        torch.set_num_threads(args.threads)
        methods["DetailFusionNet retrained"] = train_baseline(DetailFusionNet(), task, data, steps, lr=3e-3)
        methods[f"DetailFusionNet retrained + adversarial {args.adversarial:g}"] = train_baseline(
            DetailFusionNet(), task, data, steps, weights={"adversarial": args.adversarial}, lr=3e-3)
    methods.update({rule: rule for rule in args.rules.split(",") if rule})
    rows, outputs = [], {}
    for name, method in methods.items():
        torch.set_num_threads(args.threads)
        if isinstance(method, torch.nn.Module):
            fused = torch.stack([fuse_with_network(method, pair[0:1], pair[1:2])[0] for pair in pairs])
            params = sum(p.numel() for p in method.parameters())
            macs = macs_per_slice(method)
        else:
            fused = torch.stack([fuse(pair[0:1], pair[1:2], method=method).fused.float() for pair in pairs])
            params, macs = 0, float("nan")
        outputs[name] = fused
        values = score(pairs, fused, metrics)
        times = [timings(method, *volumes, threads) for threads in (1, 2)]
        rows.append((name, values, params, macs, times))
    lines = [f"### {task} ({len(pairs)} validation pairs, 8-bit fused, benchmark convention)", "",
             "| method | " + " | ".join(metrics) + " | params | MMAC/slice | ms/slice 1t | ms/slice 2t | s/vol 2mm 1t | s/vol 2mm 2t | s/vol 1mm 2t |",
             "|" + "---|" * (len(metrics) + 8)]
    for name, values, params, macs, times in rows:
        cells = [f"{values[m]:.3f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {params} | {macs / 1e6:.0f} | {times[0][0]:.1f} | {times[1][0]:.1f} |"
                     f" {times[0][1] / 1000:.2f} | {times[1][1] / 1000:.2f} | {times[1][2] / 1000:.2f} |")
    published = dict(zip(TABLE_METRICS, PUBLISHED[task]))
    lines.append("| CDDFuse (published) | " + " | ".join(f"{published[m]:.2f}" if m in published else "" for m in metrics) + " | | | | | | | |")
    ours = rows[0][1]
    better = [m for m in TABLE_METRICS if m in ours and ours[m] > published[m]]
    lines.append("")
    lines.append(f"DetailFusionNet beats CDDFuse's published value on {len(better)}/8: {', '.join(better) or 'none'}.")
    dominated = [name for name, values, *_ in rows[1:] if all(values[m] >= ours[m] for m in metrics if m != "MSE" and m != "RMSE")]
    lines.append(f"Methods at least as good as ours on every higher-is-better metric (Pareto-dominating it): {', '.join(dominated) or 'none'}.")
    if args.montage:
        montage(pairs, colours, {k: v for k, v in outputs.items() if k in ("DetailFusionNet (ours)", "maximum", "laplacian_pyramid", "guided_filter", "IFCNNStyleNet")},
                Path(args.montage) / f"networks_{task}.png")
    return "\n".join(lines)


def ceiling_table(task: str, args) -> str:
    """Which published values any output reaches on these patients, the unchanged sources included.

    CDDFuse's values were measured on its own test images. A metric whose published value is not
    reached by the MRI copied unchanged, by the other source unchanged, by any rule nor by our
    network is out of reach of every image these sources determine in an obvious way: there it
    measures the image set, not the fusion method.
    """
    data = Path(args.data)
    _, pairs, _ = load_pairs(data, task, VALIDATION[task])
    candidates: dict[str, torch.Tensor] = {"MRI unchanged (A)": pairs[:, 0:1], "other source unchanged (B)": pairs[:, 1:2]}
    torch.set_num_threads(args.threads)
    net = load_detail_fusion(task)
    candidates["DetailFusionNet (ours)"] = torch.stack([fuse_with_network(net, pair[0:1], pair[1:2])[0] for pair in pairs])
    for rule in (r for r in args.rules.split(",") if r):
        candidates[rule] = torch.stack([fuse(pair[0:1], pair[1:2], method=rule).fused.float() for pair in pairs])
    scores = {name: score(pairs, fused, TABLE_METRICS) for name, fused in candidates.items()}
    lines = [f"### {task}: best value reached on the validation patients against CDDFuse's published value", "",
             "| metric | CDDFuse (published) | best here | reached by | MRI unchanged | other unchanged | ours |",
             "|---|---|---|---|---|---|---|"]
    out_of_reach = []
    for metric, published in zip(TABLE_METRICS, PUBLISHED[task]):
        best_name = max(scores, key=lambda name: scores[name][metric])
        best = scores[best_name][metric]
        if best <= published:
            out_of_reach.append(metric)
        lines.append(f"| {metric} | {published:.2f} | {best:.3f} | {best_name} | {scores['MRI unchanged (A)'][metric]:.3f} | "
                     f"{scores['other source unchanged (B)'][metric]:.3f} | {scores['DetailFusionNet (ours)'][metric]:.3f} |")
    lines.append("")
    lines.append(f"Published values no candidate reaches (sources unchanged, {len(candidates) - 3} rules, ours): "
                 f"{', '.join(out_of_reach) or 'none'} ({len(out_of_reach)}/8).")
    return "\n".join(lines)


def load_volumes(shared: Path) -> tuple[torch.Tensor, torch.Tensor]:
    t1 = shared / "templates" / "T1.nii"
    volume = load_image(t1).as_tensor().float() if t1.exists() else torch.rand(1, 91, 109, 91)
    volume = (volume - volume.min()) / (volume.max() - volume.min())
    upsampled = F.interpolate(volume[None], scale_factor=2, mode="trilinear", align_corners=False)[0]
    return volume, upsampled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "harvard"))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--metrics", default=",".join(m for m in METRICS if not m.startswith("FMI")))
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the quality runs")
    parser.add_argument("--baselines", type=int, default=0, metavar="STEPS",
                        help="also train IFCNN-style and encoder baselines for STEPS steps")
    parser.add_argument("--adversarial", type=float, default=0.0, metavar="WEIGHT",
                        help="also retrain the flagship for --baselines steps (default 300) with and without the "
                             "adversarial term at this weight")
    parser.add_argument("--montage", help="folder for one montage PNG per task")
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    parser.add_argument("--ceilings", action="store_true",
                        help="only the reachability table: the best value any rule, our network or an unchanged source reaches")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        print(f"Harvard atlas pairs not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    volumes = load_volumes(Path(args.data).parent)
    tables = []
    for task in args.tasks.split(","):
        start = time.perf_counter()
        tables.append(ceiling_table(task, args) if args.ceilings else run_task(task, args, volumes))
        print(tables[-1] + f"\n\n({time.perf_counter() - start:.0f} s)\n", flush=True)
    if args.out:
        Path(args.out).write_text("\n\n".join(tables) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

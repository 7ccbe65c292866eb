"""Multimodal registration: accuracy, time and memory of our torch engine, SimpleITK and elastix.

    python benchmarks/registration.py                                   # everything
    python benchmarks/registration.py --sections accuracy --seeds 3     # one section, fewer seeds
    python benchmarks/registration.py --methods torch,elastix --sections scaling

Sections (Markdown tables on stdout):

``accuracy``
    SPM/MNI templates (91x109x91, 2 mm; ../shared/data/templates), pairs T1<-CT, T1<-PET,
    T1<-SPECT, T2<-T1 (fixed <- moving). For each seed a random known rigid transform (angle
    5..15 deg about a random axis, translation 6.7..20 mm) or affine one (the same plus scales and
    shears of up to 8 %) moves the moving template: cubic B-spline resampling onto its grid grown
    by 16 voxels a side, so that nothing leaves the field of view. Each method registers the fixed
    template to the moved one and to the *unmoved* one (the same resampling with the identity).
    The templates were normalised to MNI space separately, so the unmoved pair is only roughly
    aligned; the table therefore reports the **recovery** error: for every brain point ``p`` (T1 >
    30 % of its maximum) ``|K(T_moved(p)) - T_unmoved(p)|``, which is zero when the method undoes
    ``K`` exactly, whatever the templates' own misalignment. That misalignment is reported apart
    as *drift*: the mean ``|T_unmoved(p) - p|``. A failure is a seed whose mean recovery error
    exceeds 5 mm. Time: median wall time of one registration.

    Seed ``s`` registers both the moved and the unmoved pair with the registration seed ``s`` (the
    random sample positions), so the seeds are independent draws of the methods' sampling as well
    as of the known transforms. Every method draws its samples in the fixed image, which is the same
    for both registrations of a seed: the part of the result that the sample draw decides cancels
    in the recovery error. Two more columns show that part. *Seed spread*: the mean distance of the
    unmoved results of the seeds from their mean (the *consensus*): how far one registration of a
    pair lands from the method's own expected answer because of its samples. *TRE vs consensus*:
    ``|K(T_moved(p)) - consensus(p)|``, the recovery error without that cancellation. Drift is
    measured from the consensus.

``slices2d``
    The 2D case (BrainWeb-style slice pairs): axial slices 35, 45 and 55 of the same template pairs,
    each moved by known random 2D rigid transforms (5..15 deg, 6.7..20 mm, one per seed) and
    registered back in 2D; recovery error over the slice's brain pixels as above.

``deformable``
    T1<-T1 (exact), T2<-T1 and T1<-PET: the moving template deformed by a known smooth warp (sums of random
    plane waves, 80 mm wavelength, at most 4 mm), registered back with rigid + B-spline (torch,
    SimpleITK, elastix) and rigid + dense (torch); recovery error over the brain
    points as in ``accuracy`` (``|W(T_warped(p)) - T_unmoved(p)|``) next to the warp's own mean size,
    and the regularity of the fields: the smallest Jacobian determinant over all of a method's
    registrations of the pair and the largest fraction of a field's grid where it is <= 0 (folded).
    ``torch bspline, weak`` is the engine with a quarter of its default bending-energy weight: about
    elastix's default regularity, for a like-for-like accuracy comparison; ``+ fold penalty`` adds
    ``fold_penalty=10`` (the determinant kept above 0.5 on the knot lattice).

``scaling``
    T1<-CT rigid at 2 mm, the same upsampled (trilinear) to 1 mm (182x218x182) and to a 256^3 grid
    (0.85 mm): median wall time of 3 registrations and peak memory of the first, each method and
    grid in a fresh process after one warm-up registration on a tiny image (peak resident memory
    above the process's level before the registration, sampled every 2 ms; memory the process
    already holds and reuses does not count, so small values are floors). Extra torch rows: two intra-op threads in the optimisation loop
    (``cpu_threads=2``), and a 2 mm working resolution (``working_spacing_mm=2``).

``mridir``
    The TCIA MRI-DIR porcine phantom, real CT (512x512x103, 0.39x0.39x2.5 mm) and T2 MR
    (512x512x94, 0.5x0.5x2.5 mm) scanned in different positions, no ground truth: Mattes MI before
    (as scanned, and after the moments initialisation) and after registration, time, each method
    with and without the orientation search (``orientation_search="axes"``: the phantom lies 180
    degrees apart around A-P in the two scans); a checkerboard of the MR and the CT as scanned,
    registered, and registered after the search goes to
    docs/images/registration_mridir_checkerboard.png.

Methods: ``torch`` (this engine, modality presets), ``torch-finish`` (the same with
``finishing="stochastic"``: a last phase on fresh sample batches), ``simpleitk`` (our adapter: SimpleITK's
ImageRegistrationMethod with its usual recipe: 50 bins, 1 % random sampling, shrink 4/2/1,
smoothing 2/1/0 voxels, geometry-centred initialiser, regular-step gradient descent), ``elastix``
(itk-elastix default parameter maps, unchanged but for not writing the result image; skipped when
not installed). Every "MI" column is scored by one function for all methods
(:func:`monai_fusion.registration.evaluate_metric` with the ``ct-mr`` preset: full resolution, same
samples, same bins), so the values compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai.data import MetaTensor  # noqa: E402

from monai_fusion.io import load_image  # noqa: E402
from monai_fusion.registration import (  # noqa: E402
    AffineTransform,
    DisplacementField,
    ImageGrid,
    evaluate_metric,
    register,
    resample,
)
from monai_fusion.registration.elastix_backend import elastix_available  # noqa: E402
from monai_fusion.registration.spatial import as_transform, deformation_regularity  # noqa: E402
from monai_fusion.registration.evaluation import (  # noqa: E402
    downsample,
    foreground_points,
    move_image,
    random_linear_transform,
    recovery_error,
)

DATA = Path(os.environ.get("MONAI_FUSION_DATA", REPO.parent / "shared" / "data"))
TEMPLATES = DATA / "templates"
PAIRS = [("T1", "CT", "ct-mr"), ("T1", "PET", "pet-mr"), ("T1", "SPECT", "spect-mr"), ("T2", "T1", "mr-mr")]
PAD = 16
FAILURE_MM = 5.0
REPEATS = 3  # timed registrations per scaling measurement (the median is reported)
SLICES_2D = (35, 45, 55)  # axial template slices: basal ganglia, ventricles, centrum semiovale
CHECKERBOARD = REPO / "docs" / "images" / "registration_mridir_checkerboard.png"


def method_options(method: str, preset: str, model: str) -> dict:
    """Keyword arguments of ``register`` for one method."""
    if method == "torch":
        return {"backend": "torch", "preset": preset, "model": model}
    if method == "torch-finish":
        return {"backend": "torch", "preset": preset, "model": model, "finishing": "stochastic"}
    if method == "simpleitk":
        return {"backend": "simpleitk", "model": model, "bins": 50, "sampling_fraction": 0.01, "init": "geometry",
                "levels": (4, 2, 1), "smoothing_mm": (4.0, 2.0, 0.0), "iterations": 200}
    if method == "elastix":
        return {"backend": "elastix", "model": model, "init": "identity"}
    raise ValueError(method)


class PeakMemory:
    """Peak resident memory (MB) above the level at entry, sampled every 2 ms from /proc/self/statm."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def __enter__(self) -> "PeakMemory":
        self.start = self._rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def megabytes(self) -> float:
        return (self.peak - self.start) / 2**20


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- accuracy


def accuracy(methods: list[str], seeds: int, kinds: list[str]) -> None:
    images = {name: load_image(TEMPLATES / f"{name}.nii") for name in ("T1", "T2", "CT", "PET", "SPECT")}
    points = foreground_points(images["T1"], 0.3, max_points=20000)
    centre = points.mean(axis=0)
    identity = AffineTransform.identity(3)
    rows = []
    for kind in kinds:
        for fixed_name, moving_name, preset in PAIRS:
            fixed, moving = images[fixed_name], images[moving_name]
            unmoved_image = move_image(moving, identity, pad=PAD)
            knowns = [random_linear_transform(seed, kind, centre) for seed in range(seeds)]
            moved_images = [move_image(moving, known, pad=PAD) for known in knowns]
            for method in methods:
                options = method_options(method, preset, kind)
                errors, against_consensus, times, converged, unmoved = [], [], [], 0, []
                for seed, (known, moved_image) in enumerate(zip(knowns, moved_images)):
                    reference = register(fixed, unmoved_image, seed=seed, **options)
                    result = register(fixed, moved_image, seed=seed, **options)
                    unmoved.append(reference.transform.map_numpy(points))
                    errors.append(recovery_error(result.transform, known, reference.transform, points))
                    against_consensus.append(as_transform(known).map_numpy(result.transform.map_numpy(points)))
                    times.append(result.seconds)
                    converged += int(result.converged) + int(reference.converged)
                consensus = np.mean(unmoved, axis=0)
                spread = np.mean([np.linalg.norm(u - consensus, axis=1).mean() for u in unmoved])
                consensus_error = np.mean([np.linalg.norm(a - consensus, axis=1).mean() for a in against_consensus])
                means = np.array([e.mean() for e in errors])
                drift = np.linalg.norm(consensus - points, axis=1).mean()
                rows.append({
                    "pair": f"{fixed_name} <- {moving_name}", "known": kind, "method": method,
                    "mean TRE (mm)": f"{means.mean():.3f}", "worst seed mean": f"{means.max():.3f}",
                    "max TRE (mm)": f"{max(e.max() for e in errors):.3f}",
                    "TRE vs consensus (mm)": f"{consensus_error:.3f}", "seed spread (mm)": f"{spread:.3f}",
                    "failures": f"{int((means > FAILURE_MM).sum())}/{seeds}", "drift (mm)": f"{drift:.2f}",
                    "time (s)": f"{statistics.median(times):.2f}", "converged": f"{converged}/{2 * seeds}",
                })
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(f"\n### Recovery of known transforms on the 2 mm templates ({seeds} seeds)\n")
    print(markdown(rows, ["pair", "known", "method", "mean TRE (mm)", "worst seed mean", "max TRE (mm)",
                          "TRE vs consensus (mm)", "seed spread (mm)", "failures", "drift (mm)", "time (s)", "converged"]))


# ---------------------------------------------------------------------------------------------- slices2d


def axial_slice(image: MetaTensor, k: int) -> MetaTensor:
    """Axial slice ``k`` of a 3D template as a 2D image ``(1, I, J)`` with its in-plane world geometry (mm)."""
    affine = torch.as_tensor(image.affine, dtype=torch.float64).numpy()
    plane = np.eye(4)
    plane[:2, :2] = affine[:2, :2]
    plane[:2, 3] = affine[:2, 3] + affine[:2, 2] * k
    return MetaTensor(image.as_tensor()[:, :, :, k].clone(), affine=torch.as_tensor(plane))


def slices2d(methods: list[str], seeds: int) -> None:
    """Known 2D rigid motions of axial template slices (BrainWeb-style 2D pairs), registered back in 2D."""
    volumes = {name: load_image(TEMPLATES / f"{name}.nii") for name in ("T1", "T2", "CT", "PET", "SPECT")}
    identity = AffineTransform.identity(2)
    rows = []
    for fixed_name, moving_name, preset in PAIRS:
        per_method: dict[str, dict[str, list]] = {m: {"errors": [], "times": [], "converged": []} for m in methods}
        for k in SLICES_2D:
            fixed, moving = axial_slice(volumes[fixed_name], k), axial_slice(volumes[moving_name], k)
            points = foreground_points(fixed, 0.3)
            centre = points.mean(axis=0)
            unmoved_image = move_image(moving, identity, pad=PAD)
            knowns = [random_linear_transform(seed, "rigid", centre, dims=2) for seed in range(seeds)]
            for method in methods:
                options = method_options(method, preset, "rigid")
                unmoved = register(fixed, unmoved_image, **options)
                record = per_method[method]
                for known in knowns:
                    result = register(fixed, move_image(moving, known, pad=PAD), **options)
                    record["errors"].append(recovery_error(result.transform, known, unmoved.transform, points))
                    record["times"].append(result.seconds)
                    record["converged"].append(result.converged)
        for method, record in per_method.items():
            means = np.array([e.mean() for e in record["errors"]])
            rows.append({"pair": f"{fixed_name} <- {moving_name}", "method": method,
                         "mean TRE (mm)": f"{means.mean():.3f}", "worst case mean": f"{means.max():.3f}",
                         "max TRE (mm)": f"{max(e.max() for e in record['errors']):.3f}",
                         "failures": f"{int((means > FAILURE_MM).sum())}/{len(means)}",
                         "time (s)": f"{statistics.median(record['times']):.3f}",
                         "converged": f"{sum(record['converged'])}/{len(means)}"})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(f"\n### 2D: known rigid motions of axial template slices {SLICES_2D} ({seeds} seeds each)\n")
    print(markdown(rows, ["pair", "method", "mean TRE (mm)", "worst case mean", "max TRE (mm)", "failures", "time (s)",
                          "converged"]))


# -------------------------------------------------------------------------------------------- deformable


def smooth_warp(image: MetaTensor, seed: int, amplitude_mm: float = 4.0, wavelength_mm: float = 80.0) -> DisplacementField:
    """A known smooth deformation on ``image``'s grid: per axis a sum of three random plane waves.

    Each wave has a random direction, a wavelength of ``wavelength_mm`` (so the deformation is far
    smoother than the anatomy) and a random phase; the sum is scaled to a maximum displacement of
    ``amplitude_mm``. Nothing folds: the largest displacement gradient is 2 pi a / lambda ~ 0.3.
    """
    rng = np.random.default_rng(1000 + seed)
    grid = ImageGrid.of(image)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    world = grid.index_to_world(index)
    field = np.zeros((3, world.shape[0]))
    for axis in range(3):
        for _ in range(3):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            field[axis] += np.sin(2 * np.pi * world @ direction / wavelength_mm + rng.uniform(0, 2 * np.pi))
    field *= amplitude_mm / np.abs(field).max()
    return DisplacementField(torch.as_tensor(field.reshape(3, *grid.shape), dtype=torch.float32), grid)


#: name -> (backend, models, extra options). The diffeomorphic model is left out: it takes about a
#: minute per registration on these 2 mm templates (scaling and squaring of the velocity field on
#: every iteration) for the dense model's accuracy (1.59 against 1.62 mm on the exact case).
DEFORMABLE_METHODS = {
    "torch bspline": ("torch", ("rigid", "bspline"), {}),
    "torch bspline, weak (5e-4)": ("torch", ("rigid", "bspline"), {"regularisation": 5e-4}),
    "torch bspline, weak + fold penalty": ("torch", ("rigid", "bspline"), {"regularisation": 5e-4, "fold_penalty": 10.0}),
    "torch dense": ("torch", ("rigid", "dense"), {}),
    "simpleitk bspline": ("simpleitk", ("rigid", "bspline"), {}),
    "elastix bspline": ("elastix", ("rigid", "bspline"), {}),
}


def deformable(methods: list[str], seeds: int) -> None:
    """Known smooth warps of the moving template, recovered by rigid + deformable registration."""
    images = {name: load_image(TEMPLATES / f"{name}.nii") for name in ("T1", "T2", "CT", "PET", "SPECT")}
    points = foreground_points(images["T1"], 0.3, max_points=20000)
    rows = []
    # T1 <- T1: the exact case (the unmoved registration is the identity); the multimodal pairs measure
    # consistency only: two templates of different subjects have no true deformation between them
    for fixed_name, moving_name, preset in (("T1", "T1", "mr-mr"), ("T2", "T1", "mr-mr"), ("T1", "PET", "pet-mr")):
        fixed, moving = images[fixed_name], images[moving_name]
        warps = [smooth_warp(moving, seed) for seed in range(seeds)]
        moved_images = [resample(moving, warp, moving, mode="bilinear") for warp in warps]
        before = np.mean([np.linalg.norm(w.map_numpy(points) - points, axis=1).mean() for w in warps])
        for name, (backend, models, extra) in DEFORMABLE_METHODS.items():
            if backend not in methods:
                continue
            options = {"backend": backend, "preset": preset, "model": models, **extra}
            if backend == "elastix":
                options = {"backend": "elastix", "model": models, "init": "identity"}
            unmoved = register(fixed, moving, **options)
            errors, times, regularity = [], [], [deformation_regularity(unmoved.transform)]
            for warp, moved_image in zip(warps, moved_images):
                result = register(fixed, moved_image, **options)
                errors.append(recovery_error(result.transform, warp, unmoved.transform, points))
                times.append(result.seconds)
                regularity.append(deformation_regularity(result.transform))
            means = np.array([e.mean() for e in errors])
            rows.append({"pair": f"{fixed_name} <- {moving_name}", "method": name,
                         "warp before (mm)": f"{before:.2f}", "mean TRE (mm)": f"{means.mean():.3f}",
                         "worst seed mean": f"{means.max():.3f}", "p95 TRE (mm)": f"{np.percentile(np.concatenate(errors), 95):.3f}",
                         "min det J": f"{min(r[0] for r in regularity):.2f}",
                         "folded (%)": f"{100 * max(r[1] for r in regularity):.2f}",
                         "time (s)": f"{statistics.median(times):.2f}"})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(f"\n### Deformable: known smooth warps (max 4 mm, 80 mm wavelength) of the 2 mm templates ({seeds} seeds)\n")
    print(markdown(rows, ["pair", "method", "warp before (mm)", "mean TRE (mm)", "worst seed mean", "p95 TRE (mm)",
                          "min det J", "folded (%)", "time (s)"]))


# ----------------------------------------------------------------------------------------------- scaling


def upsampled(image, shape, spacing):
    """``image`` resampled (trilinear) on an isotropic grid of ``shape`` centred on its own centre."""
    grid = ImageGrid.of(image)
    centre = grid.centre()
    affine = np.diag([-spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return resample(image, AffineTransform.identity(3), (affine, shape), mode="bilinear")


def scaling_worker(method: str, size: str) -> dict:
    fixed, moving = load_image(TEMPLATES / "T1.nii"), load_image(TEMPLATES / "CT.nii")
    if size != "2mm":
        shape, spacing = {"1mm": ((182, 218, 182), 1.0), "256": ((256, 256, 256), 218.0 / 256)}[size]
        fixed, moving = upsampled(fixed, shape, spacing), upsampled(moving, shape, spacing)
    centre = foreground_points(fixed, 0.3, max_points=20000).mean(axis=0)
    moved = move_image(moving, random_linear_transform(0, "rigid", centre), pad=0)
    options = method_options(method.split(":")[0], "ct-mr", "rigid")
    if method == "torch:2-threads":
        options["cpu_threads"] = 2
    if method == "torch:working-2mm":
        options["working_spacing_mm"] = 2.0
    small = downsample(load_image(TEMPLATES / "T2.nii"), 4)
    register(small, small, **options)  # warm-up on a tiny image: first-call costs (lazy imports...) are not the method's
    with PeakMemory() as memory:
        result = register(fixed, moved, **options)
    seconds = [result.seconds] + [register(fixed, moved, **options).seconds for _ in range(REPEATS - 1)]
    metric = evaluate_metric(fixed, moved, result.transform, preset="ct-mr")  # one scoring for every method
    return {"seconds": statistics.median(seconds), "peak_mb": memory.megabytes, "metric": metric,
            "converged": result.converged, "shape": list(fixed.shape[1:])}


def scaling(methods: list[str]) -> None:
    rows = []
    variants = [m for m in methods] + (["torch:2-threads", "torch:working-2mm"] if "torch" in methods else [])
    for size in ("2mm", "1mm", "256"):
        for method in variants:
            command = [sys.executable, __file__, "--worker", json.dumps([method, size])]
            out = subprocess.run(command, capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:
                rows.append({"grid": size, "method": method, "time (s)": "failed: " + out.stderr.strip().splitlines()[-1][:80]})
                continue
            record = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"grid": "x".join(str(s) for s in record["shape"]), "method": method,
                         "time (s)": f"{record['seconds']:.2f}", "peak memory (MB)": f"{record['peak_mb']:.0f}",
                         "final MI": f"{record['metric']:.4f}", "converged": record["converged"]})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print("\n### Time and memory, T1 <- CT rigid, by grid size\n")
    print(markdown(rows, ["grid", "method", "time (s)", "peak memory (MB)", "final MI", "converged"]))


# ------------------------------------------------------------------------------------------------ mridir


def window(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    lo, hi = np.percentile(image[np.isfinite(image)], [low, high])
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 6) -> np.ndarray:
    rows, cols = a.shape
    yy, xx = np.meshgrid(np.arange(rows) * tiles // rows, np.arange(cols) * tiles // cols, indexing="ij")
    return np.where((yy + xx) % 2 == 0, a, b)


def save_checkerboards(panels: list[tuple[str, np.ndarray]], path: Path) -> None:
    from PIL import Image, ImageDraw

    tiles = []
    for title, panel in panels:
        picture = Image.fromarray((np.rot90(panel) * 255).astype(np.uint8)).convert("RGB")
        picture = picture.resize((picture.width * 3 // 2, picture.height * 3 // 2), Image.BICUBIC)
        ImageDraw.Draw(picture).text((8, 8), title, fill=(255, 255, 0))
        tiles.append(picture)
    width = sum(t.width for t in tiles) + 8 * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, max(t.height for t in tiles)), (0, 0, 0))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 8
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def mridir(methods: list[str]) -> None:
    from monai_fusion.registration.grid import as_spatial_image
    from monai_fusion.registration.inputs import initial_alignment

    mr = load_image(DATA / "mridir" / "mr")
    ct = load_image(DATA / "mridir" / "ct")
    identity = AffineTransform.identity(3)
    f, m = as_spatial_image(mr, "mr"), as_spatial_image(ct, "ct")
    moments = initial_alignment(f, m, None, None, "moments")
    score = {"preset": "ct-mr"}
    rows, results = [], {}
    base = {"as scanned": evaluate_metric(mr, ct, identity, **score), "moments": evaluate_metric(mr, ct, moments, **score)}
    for method in methods:
        for search in ("off", "axes") if method != "elastix" else ("off",):  # elastix takes no initial transform
            options = method_options(method, "ct-mr", "rigid")
            if method in ("simpleitk", "elastix"):
                options["init"] = "moments"
            with PeakMemory() as memory:
                result = register(mr, ct, orientation_search=search, **options)
            label = method + (" + orientation search" if search == "axes" else "")
            results[label] = result
            final = evaluate_metric(mr, ct, result.transform, **score)
            linear = result.transform.linear_part()
            rows.append({"method": label, "MI as scanned": f"{base['as scanned']:.4f}", "MI after init": f"{base['moments']:.4f}",
                         "MI registered": f"{final:.4f}", "time (s)": f"{result.seconds:.2f}",
                         "peak memory (MB)": f"{memory.megabytes:.0f}", "converged": result.converged,
                         "start rotation": result.orientation.description if result.orientation else "-",
                         "rotation diagonal": " ".join(f"{v:+.2f}" for v in np.diag(linear.linear)),
                         "translation (mm)": " ".join(f"{v:.1f}" for v in linear.offset)})
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print("\n### MRI-DIR phantom: MR (fixed) <- CT (moving), rigid, no ground truth\n")
    print(markdown(rows, ["method", "MI as scanned", "MI after init", "MI registered", "time (s)", "peak memory (MB)",
                          "converged", "start rotation", "rotation diagonal", "translation (mm)"]))
    if "torch" in results:
        slice_k = mr.shape[3] // 2
        mr_slice = window(mr[0, :, :, slice_k].numpy(), 1.0, 99.5)
        moved = {name: resample(ct, transform, mr)[0, :, :, slice_k].numpy() for name, transform in
                 (("as scanned", identity), ("torch, rigid", results["torch"].transform),
                  ("torch + orientation search", results["torch + orientation search"].transform))}
        body = np.argwhere(mr_slice > 0.1)  # crop to the phantom, with a margin
        (r0, c0), (r1, c1) = np.maximum(body.min(axis=0) - 40, 0), body.max(axis=0) + 40
        mr_slice = mr_slice[r0:r1, c0:c1]
        soft_tissue = (-200.0, 300.0)  # HU
        ct_window = lambda image: np.clip((image - soft_tissue[0]) / (soft_tissue[1] - soft_tissue[0]), 0, 1)  # noqa: E731
        save_checkerboards([(name, checkerboard(mr_slice, ct_window(image[r0:r1, c0:c1]))) for name, image in moved.items()],
                           CHECKERBOARD)
        print(f"\nCheckerboard (MR / CT tiles, slice {slice_k} of the MR): {CHECKERBOARD.relative_to(REPO)}")


# --------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="accuracy,slices2d,deformable,scaling,mridir")
    parser.add_argument("--methods", default="torch,torch-finish,simpleitk,elastix")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--kinds", default="rigid,affine")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads outside the optimisation loop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        method, size = json.loads(args.worker)
        print(json.dumps(scaling_worker(method, size)))
        return 0
    if not TEMPLATES.exists():
        print(f"template data not found at {TEMPLATES} (set MONAI_FUSION_DATA); nothing to benchmark")
        return 1
    methods = [m for m in args.methods.split(",") if m]
    if "elastix" in methods and not elastix_available():
        print("itk-elastix is not installed: the elastix rows are skipped (pip install 'monai-fusion[elastix]')")
        methods.remove("elastix")
    print(f"# Registration benchmark\n\nCPU: {os.cpu_count()} cores, torch {torch.__version__} "
          f"({args.threads} threads outside the optimisation loop), load average {os.getloadavg()[0]:.2f} at start")
    sections = args.sections.split(",")
    if "accuracy" in sections:
        accuracy(methods, args.seeds, args.kinds.split(","))
    if "slices2d" in sections:
        slices2d(methods, args.seeds)
    if "deformable" in sections:
        deformable(methods, args.seeds)
    if "scaling" in sections:
        scaling(methods)
    if "mridir" in sections:
        mridir(methods)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

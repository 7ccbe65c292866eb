"""Parametrised linear transform models for optimisation: translation, rigid, similarity, affine.

Every model is a *correction* applied before the starting transform ``S`` (from initialisation
or an earlier stage): ``T(x) = S(M (x - c) + c + t)``, with ``c`` the centre of rotation in the
fixed world, ``t`` a translation and ``M``:

* rigid: a rotation, ``exp([w]x)`` of an axis-angle vector ``w`` in 3D (one angle in 2D);
* similarity: ``exp(s)`` times that rotation;
* affine: ``I + G`` with ``G`` a free ``D x D`` matrix.

All parameters start at zero (``T = S``) and are *scaled* so that a unit change moves typical
points by about 1 mm: an angle, a log-scale or an entry of ``G`` is stored multiplied by
``radius`` (the RMS distance of the fixed samples from ``c``), translations are in mm. One step
size in mm then suits every parameter, which is what balances rotations against translations.
"""

from __future__ import annotations

import numpy as np
import torch

from monai_fusion.registration.spatial import AffineTransform

__all__ = ["LINEAR_MODELS", "LinearModel"]

LINEAR_MODELS = ("translation", "rigid", "similarity", "affine")


def _skew(w: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), dtype=w.dtype, device=w.device)
    return torch.stack(
        (torch.stack((zero, -w[2], w[1])), torch.stack((w[2], zero, -w[0])), torch.stack((-w[1], w[0], zero)))
    )


def _rotation(angles: torch.Tensor, dims: int) -> torch.Tensor:
    """Rotation matrix: by one angle in 2D; by the axis-angle vector ``w`` in 3D (Rodrigues).

    ``R = I + a [w]x + b [w]x^2`` with ``a = sin(t)/t`` and ``b = (1 - cos t)/t^2 = sinc(t/2)^2 / 2``,
    both written so that they stay exact (and differentiable) at ``t = 0``.
    """
    if dims == 2:
        c, s = torch.cos(angles[0]), torch.sin(angles[0])
        return torch.stack((torch.stack((c, -s)), torch.stack((s, c))))
    theta = torch.sqrt((angles * angles).sum() + 1e-30)
    a = torch.sinc(theta / torch.pi)
    b = 0.5 * torch.sinc(theta / (2 * torch.pi)) ** 2
    skew = _skew(angles)
    return torch.eye(3, dtype=angles.dtype, device=angles.device) + a * skew + b * (skew @ skew)


def _rotations_numpy(angles: np.ndarray, dims: int) -> np.ndarray:
    """:func:`_rotation` for a batch of parameter vectors ``(B, 1 or 3)``, float64 numpy, ``(B, D, D)``."""
    if dims == 2:
        c, s = np.cos(angles[:, 0]), np.sin(angles[:, 0])
        return np.stack((np.stack((c, -s), -1), np.stack((s, c), -1)), -2)
    theta = np.sqrt((angles * angles).sum(axis=1))
    small = theta < 1e-6
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta ** 2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta ** 2 / 24.0, (1.0 - np.cos(safe)) / safe ** 2)
    skew = np.zeros((angles.shape[0], 3, 3))
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -angles[:, 2], angles[:, 1], -angles[:, 0]
    skew[:, 1, 0], skew[:, 2, 0], skew[:, 2, 1] = angles[:, 2], -angles[:, 1], angles[:, 0]
    return np.eye(3) + a[:, None, None] * skew + b[:, None, None] * (skew @ skew)


class LinearModel:
    """A linear transform model with scaled parameters (see the module docstring).

    Args:
        kind: one of :data:`LINEAR_MODELS`.
        dims: 2 or 3.
        centre: centre of rotation (fixed world, mm).
        radius: parameter scale in mm (RMS distance of the fixed samples from ``centre``).
        start: the starting transform ``S``.
        device: where the parameters live.
    """

    def __init__(self, kind: str, dims: int, centre, radius: float, start: AffineTransform, device=None) -> None:
        if kind not in LINEAR_MODELS:
            raise ValueError(f"unknown linear model {kind!r}; choose one of {LINEAR_MODELS}")
        self.kind = kind
        self.dims = dims
        self.radius = float(max(radius, 1.0))
        self.start = start
        n_rot = {2: 1, 3: 3}[dims]
        sizes = {"translation": (0, 0, 0), "rigid": (n_rot, 0, 0), "similarity": (n_rot, 1, 0), "affine": (0, 0, dims * dims)}
        self.n_rotation, self.n_scale, self.n_matrix = sizes[kind]
        n_params = self.n_rotation + self.n_scale + self.n_matrix + dims
        self.params = torch.zeros(n_params, dtype=torch.float32, device=device, requires_grad=True)
        self.device = self.params.device
        self.centre = torch.as_tensor(np.asarray(centre, dtype=np.float64), dtype=torch.float32, device=self.device)
        start_matrix = torch.as_tensor(start.matrix, dtype=torch.float32, device=self.device)
        self._start_linear = start_matrix[:dims, :dims]
        self._start_offset = start_matrix[:dims, dims]

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.params]

    def _local(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, t)`` of the correction from the scaled parameters."""
        dims = self.dims
        rotation = params[: self.n_rotation] / self.radius
        log_scale = params[self.n_rotation: self.n_rotation + self.n_scale] / self.radius
        matrix_part = params[self.n_rotation + self.n_scale: self.n_rotation + self.n_scale + self.n_matrix] / self.radius
        translation = params[-dims:]
        if self.kind == "translation":
            linear = torch.eye(dims, dtype=params.dtype, device=params.device)
        elif self.kind == "affine":
            linear = torch.eye(dims, dtype=params.dtype, device=params.device) + matrix_part.view(dims, dims)
        else:
            linear = _rotation(rotation, dims)
            if self.kind == "similarity":
                linear = linear * torch.exp(log_scale[0])
        return linear, translation

    def matrix_offset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, b)`` with ``T(x) = A x + b``, differentiable in the parameters."""
        linear, translation = self._local(self.params)
        offset = self.centre - linear @ self.centre + translation
        return self._start_linear @ linear, self._start_linear @ offset + self._start_offset

    def _local_numpy(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_local` for a batch of parameter vectors ``(B, P)`` in float64 numpy: ``(B, D, D)``, ``(B, D)``."""
        dims, batch = self.dims, params.shape[0]
        start = self.n_rotation + self.n_scale
        if self.kind == "translation":
            linear = np.broadcast_to(np.eye(dims), (batch, dims, dims))
        elif self.kind == "affine":
            linear = np.eye(dims) + params[:, start: start + self.n_matrix].reshape(batch, dims, dims) / self.radius
        else:
            linear = _rotations_numpy(params[:, : self.n_rotation] / self.radius, dims)
            if self.kind == "similarity":
                linear = linear * np.exp(params[:, self.n_rotation: start] / self.radius)[:, :, None]
        return linear, params[:, -dims:]

    def normalised_matrix(self, to_linear: np.ndarray, to_offset: np.ndarray,
                          step: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C, J)``: ``C = [L A | L b + o]`` (``(D, D + 1)``, float32) maps homogeneous fixed points to
        the coordinates ``L y + o`` of ``y = A x + b`` (e.g. ``grid_sample``'s), and ``J`` is
        ``dC / dparams`` (``(D * (D + 1), P)``, float32), from float64 central differences.
        """
        dims = self.dims
        start = np.asarray(self.start.matrix, dtype=np.float64)
        centre = self.centre.detach().cpu().numpy().astype(np.float64)
        to_linear = np.asarray(to_linear, dtype=np.float64)
        # the model maps x to S(M (x - c) + c + t): fold the start and the coordinate change around it
        outer_linear = to_linear @ start[:dims, :dims]
        outer_offset = to_linear @ start[:dims, dims] + np.asarray(to_offset, dtype=np.float64)
        params = self.params.detach().cpu().numpy().astype(np.float64)
        count = params.size
        batch = np.repeat(params[None], 2 * count + 1, axis=0)  # the point, then +step and -step per parameter
        batch[1 + np.arange(count), np.arange(count)] += step
        batch[1 + count + np.arange(count), np.arange(count)] -= step
        linear, translation = self._local_numpy(batch)
        offset = centre - linear @ centre + translation
        combined = np.concatenate((outer_linear @ linear, (offset @ outer_linear.T + outer_offset)[:, :, None]), axis=2)
        jacobian = ((combined[1: 1 + count] - combined[1 + count:]) / (2 * step)).reshape(count, -1).T
        return (torch.as_tensor(combined[0], dtype=torch.float32, device=self.device),
                torch.as_tensor(jacobian, dtype=torch.float32, device=self.device))

    def map_points(self, points: torch.Tensor) -> torch.Tensor:
        linear, offset = self.matrix_offset()
        return points @ linear.T + offset

    def regulariser(self) -> torch.Tensor:
        return torch.zeros((), device=self.device)

    def result(self) -> AffineTransform:
        """The current transform as a float64 :class:`AffineTransform` centred on ``c``."""
        dims = self.dims
        with torch.no_grad():
            linear, translation = self._local(self.params.detach().to(torch.float64).cpu())
        centre = self.centre.detach().to(torch.float64).cpu()
        offset = centre - linear @ centre + translation
        local = np.eye(dims + 1)
        local[:dims, :dims] = linear.numpy()
        local[:dims, dims] = offset.numpy()
        start_kind = self.start.kind
        kinds = LINEAR_MODELS
        kind = kinds[max(kinds.index(self.kind), kinds.index(start_kind) if start_kind in kinds else 3)]
        return AffineTransform(self.start.matrix @ local, centre.numpy(), kind)

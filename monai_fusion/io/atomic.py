"""Atomic writes: an output is either complete or absent, never half-written.

Every writer in :mod:`monai_fusion.io` writes to a temporary name in the destination's own
folder (so the final rename stays on one file system) and renames it into place only after the
write succeeded. A crash, a full disk or a bad value mid-write leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from monai_fusion.errors import OutputError

__all__ = ["atomic_file", "atomic_directory", "prepare_parent", "ensure_folder", "usual_mode"]


def prepare_parent(path: str | os.PathLike, is_folder: bool = False) -> Path:
    """Create ``path``'s parent folder if needed and check we may write there."""
    path = Path(path)
    parent = ensure_folder(path.parent if str(path.parent) else Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {parent}: permission denied; choose another output path")
    if path.is_dir() and not is_folder:
        raise OutputError(f"{path} is a folder; give a file name for this output")
    return path


def ensure_folder(path: str | os.PathLike) -> Path:
    """Create an output folder (and parents), or say in one line why it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {path}: {_reason(err)}; choose another output path") from None
    return path


def _full_suffix(path: Path) -> str:
    """``.nii.gz`` for ``a.nii.gz``: libraries pick the format from the whole suffix."""
    suffixes = path.suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() == ".gz":
        return "".join(suffixes[-2:])
    return path.suffix


def usual_mode(base: int) -> int:
    """``base`` under the process umask: the mode ``open``/``mkdir`` would give a new file or folder.

    ``tempfile`` creates its files 0600 and folders 0700 (private until renamed); outputs must end
    up like any other file the user writes, readable by the group a hospital team shares.
    """
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _reason(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else str(err)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (``.nii.gz``, ``.nrrd``...) so format-sniffing
    libraries write the right format. On any exception the temporary file is removed.

    Example:
        >>> with atomic_file("out/fused.nii.gz") as tmp:  # doctest: +SKIP
        ...     nib.save(image, tmp)
    """
    path = prepare_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + _full_suffix(path), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, usual_mode(0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise OutputError(f"could not write {path}: {_reason(err)}") from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it to ``path`` when the block succeeds.

    An existing non-empty ``path`` is an error unless ``overwrite``; then it is replaced only
    after the new folder is complete.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; choose another output path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputError(f"output folder {path} is not empty; remove it or allow overwriting")
    prepare_parent(path, is_folder=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    os.chmod(tmp, usual_mode(0o777))
    try:
        yield tmp
        if path.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "replaced")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise OutputError(f"could not write {path}: {_reason(err)}") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

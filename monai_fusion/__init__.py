"""monai-fusion: a MONAI plugin for multimodal medical image fusion."""

__version__ = "0.1.0"

from monai_fusion.errors import InputError, MonaiFusionError, OutputError

__all__ = ["__version__", "InputError", "MonaiFusionError", "OutputError", "fuse"]


def __getattr__(name: str):
    """Lazy attributes (PEP 562): ``monai_fusion.fuse`` imports the pipeline only when first used."""
    if name == "fuse":
        from monai_fusion.workflows.fuse import fuse

        return fuse
    raise AttributeError(f"module 'monai_fusion' has no attribute {name!r}")

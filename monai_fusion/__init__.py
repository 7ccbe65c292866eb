"""monai-fusion: a MONAI plugin for multimodal medical image fusion."""

__version__ = "0.1.0"

from monai_fusion.errors import InputError, MonaiFusionError, OutputError

__all__ = ["__version__", "InputError", "MonaiFusionError", "OutputError"]

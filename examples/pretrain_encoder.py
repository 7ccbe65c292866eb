"""Pretrain the 2D fusion encoder, or run the transfer experiment, from the shared data.

    python examples/pretrain_encoder.py pretrain --data ../shared/data      # ~10 min, writes the shipped weights
    python examples/pretrain_encoder.py transfer --data ../shared/data --out transfer.json

See docs/encoder.md for the recipe and monai_fusion/workflows/pretrain_encoder.py for the options.
"""

import sys

from monai_fusion.workflows.pretrain_encoder import main

if __name__ == "__main__":
    main(sys.argv[1:])

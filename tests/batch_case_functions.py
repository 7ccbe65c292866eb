"""Cheap, picklable case functions for the batch tests (``--case-function tests.batch_case_functions:NAME``).

``write_case`` stands in for the fuse pipeline: it derives its outputs from the input bytes and the
options only (so two runs give byte-identical files), sleeps ``BATCH_TEST_SLEEP`` seconds, and, as
its last step, leaves one marker file per execution in ``BATCH_TEST_MARKERS`` so tests can count
how often each case ran. Inputs whose content starts with ``bad`` raise a user error, ``boom`` a bug,
``die`` kills the worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import uuid
from pathlib import Path

from monai_fusion.errors import InputError


def write_case(case: dict, out_dir: str) -> dict:
    fixed, moving = Path(case["fixed"]).read_bytes(), Path(case["moving"]).read_bytes()
    if moving.startswith(b"bad"):
        raise InputError(f"modality mismatch: {case['moving']} is not a CT; check the datalist")
    if moving.startswith(b"die"):  # what the kernel's out-of-memory killer does to a worker
        os.kill(os.getpid(), signal.SIGKILL)
    if moving.startswith(b"boom"):
        raise ZeroDivisionError(f"division by zero while reading {case['moving']}")
    time.sleep(float(os.environ.get("BATCH_TEST_SLEEP", "0")))
    out = Path(out_dir)
    (out / "qc").mkdir(parents=True)
    options = json.dumps(case["options"], sort_keys=True).encode()
    (out / "fused.bin").write_bytes(hashlib.sha256(fixed + b"|" + moving + b"|" + options).digest() * 64)
    (out / "qc" / "report.json").write_text(json.dumps({"id": case["id"], "options": case["options"]}, sort_keys=True))
    markers = os.environ.get("BATCH_TEST_MARKERS")
    if markers:
        Path(markers, f"{case['id']}.{uuid.uuid4().hex}").touch()
    return {"outputs": {"fused": out / "fused.bin", "report": "qc/report.json"}}

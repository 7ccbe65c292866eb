# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment from nothing when it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch that lies on this machine's disk; a bare `torch` would pull a CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test env test-deps clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

# dciodvfy (dicom3tools) validates the DICOM we write, Orthanc (+ its DICOMweb plugin) serves the
# DICOMweb tests; install them when missing and we may. The Debian orthanc package does not start
# a service in containers (no init); the tests run their own Orthanc on loopback.
test-deps:
	@command -v dciodvfy >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools) >/dev/null \
	      || echo "warning: could not install dicom3tools; DICOM validation tests will skip"; \
	  else echo "warning: dciodvfy not found and cannot apt-get install; DICOM validation tests will skip"; fi; }
	@{ command -v Orthanc >/dev/null 2>&1 && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb) >/dev/null \
	      || echo "warning: could not install orthanc; DICOMweb tests will skip"; \
	  else echo "warning: Orthanc with its DICOMweb plugin not found and cannot apt-get install; DICOMweb tests will skip"; fi; }

test: env test-deps
	$(BIN)/python -m pytest -q tests

demo: env
	$(BIN)/monai-fusion demo --out demo-output

clean:
	rm -rf $(VENV) demo-output .pytest_cache

#!/usr/bin/env bash
# Builds .whl/: ikl-zoo plus the packages the GPU image lacks, for its Python 3.12 (see DEVELOPERS.md).
# Every version is pinned and .whl/ is emptied first: two versions of one package stop the whole install there.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f .whl/*.whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    robustbench==1.1.1 pyautoattack==0.2.0 foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 \
    smmap==5.0.3 gdown==5.1.0 beautifulsoup4==4.15.0 soupsieve==4.1.3 geotorch==0.4.0 timm==1.0.9 \
    setuptools==80.10.2
.venv/bin/pip wheel -q --no-deps --no-build-isolation -w .whl .
ls .whl

#!/usr/bin/env bash
# Builds .whl/: ikl-zoo plus the packages the GPU image lacks, for its Python 3.12 (see DEVELOPERS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f .whl/ikl_zoo-*.whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    robustbench==1.1.1 pyautoattack==0.2.0 foolbox==3.3.4 eagerpy GitPython gitdb smmap gdown==5.1.0 \
    beautifulsoup4 soupsieve geotorch timm==1.0.9 'setuptools<81'
.venv/bin/pip wheel -q --no-deps --no-build-isolation -w .whl .
ls .whl

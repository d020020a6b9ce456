#!/usr/bin/env bash
# Download (here, where pip works) the wheels benchmarks/gpu_check.sh needs on a GPU machine that
# has torch but no mace-torch stack and no network: into .whl/ (ignored by git), for Python 3.12.
#   bash scripts/gpu_wheels.sh            # mace-torch 0.3.16, e3nn 0.4.4, ase, ... and cuequivariance (6 MB)
#   bash scripts/gpu_wheels.sh --cueq-ops # also cuEquivariance's CUDA 13 kernels (+71 MB: more than the
#                                         # 64 MiB a device call may carry; for machines with another route)
#   bash scripts/gpu_wheels.sh --sevenn   # also sevenn 0.13.0 (MIT) and braceexpand, for the SevenNet
#                                         # frontier (benchmarks/gpu_frontier.sh); sevenn's 43 MB wheel is
#                                         # rewritten with SevenNet-0 (11Jul2024) as its only checkpoint (~10 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
PKGS=(mace-torch==0.3.16 e3nn==0.4.4 ase==3.29.0 matscipy==1.3.1 torch-ema==0.3 prettytable==3.18.0
      wcwidth configargparse==1.9.0 GitPython gitdb smmap lmdb==3.0.0 orjson==3.13.0 opt-einsum-fx==0.1.4
      cuequivariance==0.13.0 cuequivariance-torch==0.13.0)
[[ "${1:-}" == "--cueq-ops" ]] && PKGS+=(cuequivariance-ops-cu13==0.13.0 cuequivariance-ops-torch-cu13==0.13.0)
[[ "${1:-}" == "--sevenn" ]] && PKGS+=(sevenn==0.13.0 braceexpand==0.1.7)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "${PKGS[@]}"
if [[ "${1:-}" == "--sevenn" ]]; then  # keep SevenNet-0's checkpoint only; RECORD rewritten to match
    python3 - .whl/sevenn-0.13.0-py3-none-any.whl <<'PY'
import sys, zipfile, pathlib
src = pathlib.Path(sys.argv[1]); tmp = src.with_suffix(".slim")
dropped = lambda n: "/pretrained_potentials/" in n and "SevenNet_0__11Jul2024" not in n
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if dropped(item.filename):
            continue
        data = zin.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = "".join(l for l in data.decode().splitlines(True) if not dropped(l.split(",")[0])).encode()
        zout.writestr(item, data)
tmp.replace(src)
PY
fi
du -sh .whl

#!/usr/bin/env bash
# Serve this repo's bundles to 3D Slicer: a MONAI Label server (apps/radcascade_label) on a folder of studies.
#   bash scripts/start_monailabel.sh /path/to/studies                       # every workflow on 127.0.0.1:8000
#   bash scripts/start_monailabel.sh /path/to/studies --conf models liver  # any further monailabel option
# The studies folder holds NIfTI (.nii, .nii.gz) or NRRD volumes, or radiographs (PNG, JPEG, TIFF, .dcm) for
# --conf models chest_xray; labels are saved in its labels/ subfolder.
# MONAILABEL_HOST / MONAILABEL_PORT change the address; the environment comes from scripts/setup_monailabel_env.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV=${MONAILABEL_VENV:-$ROOT/.venv-monailabel}
APP=${RADCASCADE_LABEL_APP:-$ROOT/apps/radcascade_label}
HOST=${MONAILABEL_HOST:-127.0.0.1}
PORT=${MONAILABEL_PORT:-8000}

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 STUDIES_DIR [--conf KEY VALUE ...]" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ] || [ ! -e "$VENV/bin/monailabel" ]; then
  echo "no MONAI Label in $VENV: create the environment first with bash scripts/setup_monailabel_env.sh" >&2
  exit 1
fi
STUDIES=$(realpath -m "$1")
shift
cd "$ROOT"  # the bundles' relative paths (runs/, data/) start at the repo root
# python -m monailabel.main, not the bin/monailabel wrapper: the wrapper runs whichever `python` is first on PATH
# and re-splits its arguments (a JSON --conf value with spaces would break).
exec "$VENV/bin/python" -m monailabel.main start_server --app "$APP" --studies "$STUDIES" --host "$HOST" --port "$PORT" "$@"

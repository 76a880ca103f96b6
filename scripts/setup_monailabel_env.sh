#!/usr/bin/env bash
# Create .venv-monailabel/: MONAI Label 0.8.5 and this project, in an environment of their own.
#   bash scripts/setup_monailabel_env.sh            # 3.5 min on 2 CPU cores (measured 2026-12-05), about 8 GB; re-runnable
# MONAI Label pins numpy < 2 and pydicom < 3 (so highdicom < 0.23: requirements-monailabel.txt), which the main
# environment (.venv) must not get: never install monailabel there. Set PYTHON to choose the interpreter (3.10 or
# 3.11), MONAILABEL_VENV to choose the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MONAILABEL_VENV:-.venv-monailabel}

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# torch first, pinned to the project's tested versions (as in the README), before anything can pull another one.
"$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
# MONAI Label with its pins and this project in one resolution, so that the project's requirements (mlflow,
# SimpleITK, ...) are chosen to fit MONAI Label's numpy < 2; torch stays where it is.
"$VENV/bin/pip" install -q -r requirements-monailabel.txt -e . torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -c "import monailabel, monai, numpy, pydicom, pipelines; print('monailabel', monailabel.__version__, \
'| monai', monai.__version__, '| numpy', numpy.__version__, '| pydicom', pydicom.__version__)"
echo "ready: $VENV (start a server: bash scripts/start_monailabel.sh /path/to/studies)"

"""The Python behind the bundles. Each subpackage has one job:

* ``workflows``: the registry of workflows and their bundles, which the command line, tests and docs read;
* ``api``: :class:`pipelines.api.Segmenter`, a bundle's models on files or in-memory images;
* ``runner``: :func:`pipelines.runner.run_stage`, one bundle stage in this process (command line, MONAI Label);
* ``io``: reading inputs, writing predictions atomically, DICOM SEG;
* ``validation``: data and path checks that name the file and the problem;
* ``models``: segmenters, slice classifiers, fast layers, losses;
* ``inference``: the slice-gated cascade and sliding-window inference;
* ``training``: resumable training, MLflow runs, distributed training;
* ``evaluation``: metrics;
* ``reports``: HTML reports, overlays, training curves;
* ``phantoms``: the embedded default data;
* ``xray``: the chest X-ray workflow's own steps;
* ``cli``: the ``radcascade`` command, config checks, export.

Subpackages and modules load on first attribute access, so a bundle config can ``$import pipelines`` and use
``$pipelines.inference.cascade...`` without paying for the others at start-up.
"""

import logging
import warnings

from pipelines._lazy import lazy_getattr

# MONAI's LoadImage registers every reader, and the GPU DICOM decoder's probe announces twice, as a warning, that
# nvImageCodec is absent: nothing a user of these CPU or CUDA bundles can act on. Quiet exactly that probe.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register")

_SUBMODULES = (
    "api",
    "cli",
    "evaluation",
    "inference",
    "io",
    "models",
    "phantoms",
    "reports",
    "runner",
    "training",
    "validation",
    "workflows",
    "xray",
)
__getattr__ = lazy_getattr(__name__, _SUBMODULES)

"""Makes the shared dataset builders (``tests/pipeline/dataset_builders.py``) importable from
the role sub-folders (``perception/``, ``dataset/``, ``qa/``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

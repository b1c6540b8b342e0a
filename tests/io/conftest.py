"""Makes the torch-free file writer of tests/data importable here."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / 'data'))

"""python -m vsvitm.farm: the vsvitm-farm command."""
import sys

from .cli import main

sys.exit(main())

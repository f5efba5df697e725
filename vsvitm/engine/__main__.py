"""python -m vsvitm.engine FOLDER: (re)write the manifests of a model folder (models.upgrade)."""
import sys

from .models import main

sys.exit(main())

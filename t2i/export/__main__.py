"""``python -m t2i.export RUN OUT ...`` is ``python -m t2i export RUN OUT ...``."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))

"""``python -m wsgi_logstream``: the ``wsgi-logstream`` command (see ``--help``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

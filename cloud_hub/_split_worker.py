"""The child process that splits models for a hub (:mod:`cloud_hub._splitter`): ``python -m cloud_hub._split_worker``.

A module of its own: run as ``python -m cloud_hub._splitter``, that module would be imported twice (once by
the package, once as ``__main__``), and Python warns of it.
"""

import sys

from cloud_hub._splitter import serve

if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)

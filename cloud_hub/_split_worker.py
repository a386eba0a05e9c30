"""The child process that splits models for a hub (:mod:`cloud_hub._splitter`): ``python -m cloud_hub._split_worker``.

A module of its own, so that what the child pickles names ``cloud_hub._splitter``'s classes, as the hub does.
"""

import sys

from cloud_hub._splitter import serve

if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)

"""TOML tables read into frozen dataclasses, every problem named by its line and field.

The agent's service config (``edgecut agent serve --config``) and the
simulation's scenario files share this reader. Like :mod:`protocol.http`, not
imported by ``import edge_agent``.
"""

from edge_agent._schema import NOT_READ, Reader, Setting, build, read_toml, setting, syntax_error, with_lines

__all__ = [
    "NOT_READ",
    "Reader",
    "Setting",
    "build",
    "read_toml",
    "setting",
    "syntax_error",
    "with_lines",
]

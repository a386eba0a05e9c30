"""edgecut: edge-cloud split inference over MQTT.

This package holds only the command line and the version; the library lives in
the top-level packages ``protocol``, ``models``, ``edge_agent`` and ``cloud_hub``.
"""

from edgecut._version import __version__

__all__ = ["__version__"]

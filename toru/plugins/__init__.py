"""The plugin platform: wire protocol, metadata, processes and connections.

Keep this file free of imports: the SDK (and every packaged plugin) imports
``toru.plugins.framing``, which must load with nothing but the standard
library and Trio.
"""

"""Sans-I/O Bayeux core: stdlib and orjson only.

Nothing in this package reads a clock, a socket or the environment: time is passed
in as ``now`` and bytes come in and go out as values. ``tests/unit/test_purity.py``
fails if any module here imports asyncio or an I/O library.
"""

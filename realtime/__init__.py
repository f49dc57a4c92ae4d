"""A Faye-compatible Bayeux push server.

Package map: ``bayeux`` is the sans-I/O protocol core, ``engine`` holds node-local
state (sessions, subscriptions, mailboxes), ``broker`` is the cluster seam,
``routing`` the pure cuckoo-filter routing, ``transports`` the I/O adapters, and
``server`` sequences a batch through extensions, handlers and the engine.
"""

from __future__ import annotations

__version__ = "0.1.0"

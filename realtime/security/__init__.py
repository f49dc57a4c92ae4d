"""Authentication, channel policy and abuse limits (DESIGN.md §6).

``policy`` and ``limits`` are pure (time is an argument); ``tokens`` verifies JWTs;
``guard`` is what the Bayeux server consults on handshake, subscribe and publish.
"""

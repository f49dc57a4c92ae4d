"""I/O adapters: bytes in from a socket or request, batches to the server, bytes out."""

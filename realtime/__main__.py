from __future__ import annotations

from realtime.cli import main

main()

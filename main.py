"""Run Studio from a source checkout: python main.py"""

from __future__ import annotations

from studio.app import main

raise SystemExit(main())

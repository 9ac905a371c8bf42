"""Widgets only. Only the GUI thread touches them (DESIGN rule 2)."""

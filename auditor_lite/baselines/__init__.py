"""Baselines that ignore audio and text (constant, mask-only geometry, temporal consistency)."""

"""Synthetic, NPD-shaped pupil records: the schema declared once, the generator, the loader."""

GENERATOR_VERSION = "2"

"""The query engine: parse → plan → bounded SQL → sandboxed DuckDB → OpenDP → output rules.

Nothing here returns a true aggregate to a caller: ``release()`` hands back noisy values only.
"""

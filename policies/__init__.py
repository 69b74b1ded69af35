"""The policy: what may be asked, by whom, for which purpose, at what privacy cost.

``model`` (the typed document), ``load`` (the only I/O), ``reasons`` (stable reason codes),
``epsilon`` (exact micro-ε arithmetic) and ``decide`` (pure). Never imports ``safesetting``.
"""

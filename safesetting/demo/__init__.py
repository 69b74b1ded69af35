"""The demo for policymakers: a scripted story played against the real service, told in
the terminal and in a self-contained HTML report.

``story`` holds the script as data, ``play`` runs it, ``truth`` computes the true values only
a synthetic demo may show, ``terminal`` tells it with rich.
"""

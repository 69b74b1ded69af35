"""Safe Setting: researchers come to the data; answers leave, rows never do."""

__version__ = "0.1.0"

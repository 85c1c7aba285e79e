"""Command-line scripts (``python -m gluefactory.scripts.<name>``): feature exports."""

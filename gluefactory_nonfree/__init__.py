"""Models whose pretrained weights are not free for commercial use.

Kept apart from the Apache-2.0 ``gluefactory`` package so that using them is an explicit
choice: ``get_model("gluefactory_nonfree.superpoint")``. Importing this package downloads
nothing; the weights are fetched only when such a model is built with its default
``weights``. See ``LICENSE`` in this folder.
"""

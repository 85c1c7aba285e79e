"""Where datasets come from: downloaders, the built-in set generators, the photo
collections and the MegaDepth converter. Each writes through :mod:`gluefactory.formats`
layouts; the dataset classes in :mod:`gluefactory.datasets` only read, after
:mod:`.locate` has made their folder available (built, downloaded or the user's)."""

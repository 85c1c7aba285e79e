"""List registered models: ``python -m gluefactory.models``."""

from . import list_models

if __name__ == "__main__":
    for name in list_models():
        print(name)

import os

os.environ.setdefault("FACTORLAB_CACHE", os.path.join(os.path.dirname(__file__), "..", ".factorlab-cache"))

import os

# SynthFaces renders once into the repository's cache, shared with factorlab's own tests.
os.environ.setdefault("FACTORLAB_CACHE", os.path.join(os.path.dirname(__file__), "..", "..", "..", ".factorlab-cache"))

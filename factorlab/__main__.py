"""`python -m factorlab` (also what `torchrun -m factorlab run ...` runs)."""

from factorlab.cli import entry

entry()

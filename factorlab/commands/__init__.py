"""The built-in `factorlab` sub-commands (registered through the same hook as plugins' commands)."""

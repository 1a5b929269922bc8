"""codeexec (bootstrap)."""

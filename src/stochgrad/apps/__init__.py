"""Applications: one module per domain, each depending on the core only."""

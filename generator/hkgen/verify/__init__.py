"""Stage 6, verify: every rendered file reparsed, built and checked against its schema before writing."""

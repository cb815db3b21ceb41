"""Stage 2, validation: schema errors worded for people and the cluster rules."""

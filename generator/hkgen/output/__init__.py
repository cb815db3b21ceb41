"""Stage 7, write: manifest-tracked writes of the rendered tree, and the transitions between two trees."""

"""Stage 4, layout: the areas that contribute files to the rendered tree, their shared types and the registry."""

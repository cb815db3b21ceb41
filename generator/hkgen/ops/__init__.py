"""Day-2 operations around the pipeline: publish, git, boot media, scaffolding."""

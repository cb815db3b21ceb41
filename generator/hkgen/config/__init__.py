"""The input: loading cluster.yaml, its schema and reference, the app catalogue, the model, secrets, migrations."""

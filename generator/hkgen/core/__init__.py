"""hkgen's core: errors, the only subprocess user, the one YAML writer, where data lives."""

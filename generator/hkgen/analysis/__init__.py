"""The `hkgen plan` analysis: capacity of each Pi and what survives a dead one."""

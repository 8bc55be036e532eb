"""The commands: one parsed command line in, one reply out (`dispatch`)."""

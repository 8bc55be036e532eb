"""`faktory-py conformance`: replays the protocol cases against any server (`runner`)."""

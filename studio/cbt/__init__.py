"""CBT domain knowledge: the twelve techniques and the counseling-dialogue format."""

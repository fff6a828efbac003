"""guesser: what did I just hear? Ranked AudioSet labels and families for a sound."""

__version__ = "0.1.0"

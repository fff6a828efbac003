"""The Textual app behind ``guesser play`` (app.py), its screens, widgets, workers and styles."""

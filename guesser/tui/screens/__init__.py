"""Screens of the guesser app, one module each."""

"""The resources Ember manages and their pure rules: no I/O happens here."""

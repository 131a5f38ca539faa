"""Shared test helpers: the real project config shrunk, generated audio, tiny checkpoints.

Test modules import from here, never from each other; fixtures live in `conftest.py`.
"""

"""The small shared kernel: errors, config base, time and hashing.

Imports nothing of the project and nothing heavy, so every layer may use it.
"""

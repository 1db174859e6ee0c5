"""TFLite files (convert, verify, gates), running and timing them, and command plumbing.

Importing it changes nothing in the process; the commands set their own environment
(export/cli.py).
"""

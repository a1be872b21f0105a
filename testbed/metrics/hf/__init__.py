"""The metrics as one Hugging Face `evaluate` module, collapse/collapse.py: `testbed eval` under evaluate's API.

evaluate loads a module script by path, from a folder named like it; load it with
testbed.metrics.load_evaluate(). This package only ships that folder.
"""

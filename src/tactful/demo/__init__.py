"""The demo story: SPEC's failure stories as a few dozen events (see service/demo.py)."""

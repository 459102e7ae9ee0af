"""Presentation: screens as values (``screen.py``), one keyboard builder with the 64-byte
check and a pager (``keyboards.py``), typed callback data (``callbacks.py``) and the pure
screen functions per flow (``screens/``). Handlers navigate, views render, services decide.
"""

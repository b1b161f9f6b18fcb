"""Test helpers shared by the test suite and its subprocess drivers (importable as ``helpers``:
``tests/conftest.py`` puts ``tests/`` on ``sys.path`` and on ``PYTHONPATH`` for spawned workers)."""

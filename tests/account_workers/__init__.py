"""Worker processes of the account tests (``tests/test_account_*.py``) and their harness.

``worker`` is what each OS process runs (``python -m account_workers.worker '<json>'``);
``harness`` starts those processes from a test and talks to them over their pipes.
"""

"""Browser tests: JupyterLab in Debian's Chromium (see conftest.py)."""

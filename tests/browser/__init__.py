"""End-to-end browser tests (JupyterLab / Notebook 7 + Chromium); a package so its conftest
does not shadow tests/conftest.py."""

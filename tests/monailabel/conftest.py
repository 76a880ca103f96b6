"""Registers the ``monailabel`` marker for these tests (setup.cfg may list it as well)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "monailabel: the MONAI Label app against a real server (needs .venv-monailabel)")

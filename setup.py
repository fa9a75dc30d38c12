"""Package layout: ptreplay/* plus the top-level schemas/ folder.

schemas/ holds declarative (non-Python) definitions; it is installed as the
data of the package ``ptreplay.schemas`` so that an installed ptreplay finds
it with :mod:`importlib.resources`. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["ptreplay", "ptreplay.*"]) + ["ptreplay.schemas"],
    package_dir={"ptreplay.schemas": "schemas"},
    package_data={"ptreplay.schemas": ["*", "**/*"]},
    include_package_data=False,
)

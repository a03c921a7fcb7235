# hardware_profiles/ lives at the repository root, where contributors find it, and ships inside
# the wheel as the package ecnas.hardware_profiles. pyproject's packages.find cannot add a
# package from outside ecnas/, hence this shim; everything else is in pyproject.toml.
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ecnas", "ecnas.*"]), "ecnas.hardware_profiles"],
    package_dir={"ecnas.hardware_profiles": "hardware_profiles"},
)

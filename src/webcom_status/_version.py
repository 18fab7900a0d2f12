"""The installed version of the distribution."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("webcom-status")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

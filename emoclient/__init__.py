"""emoclient: the asyncio-native client for DashScope's EMO and Emoji portrait-video models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emoclient")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]

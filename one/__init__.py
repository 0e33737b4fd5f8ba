"""one-next: a fast, dependable implementation of ONE, the Open Neurophysiology Environment.

``one.__version__`` is the version of the ONE API implemented (ONE-api's numbering, checked by
Alyx); the one-next distribution has its own, ``one.__distribution_version__``.
"""
from one import _version

__version__ = _version.ONE_API_VERSION
__distribution_version__ = _version.DISTRIBUTION_VERSION

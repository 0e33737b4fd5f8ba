"""The two versions of one-next.

* `DISTRIBUTION_VERSION`: the version of the one-next distribution (what ``pip`` installs and
  ``pyproject.toml`` reads);
* `ONE_API_VERSION`: the level of the ONE API that one-next implements, ONE-api's version number.
  It is ``one.__version__``, sent to Alyx in the ``ONE-API-Version`` header and compared with
  the minimum versions that Alyx and its cache tables ask for.
"""

DISTRIBUTION_VERSION = '0.2.0'
ONE_API_VERSION = '3.6.1'

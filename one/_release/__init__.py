"""Data releases: the ``cache_info.json`` of a release, its remote tables and their refresh."""

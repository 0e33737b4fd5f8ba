"""Small URL helpers for the REST client."""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

__all__ = ['update_url_params']


def update_url_params(url: str, params: dict) -> str:
    """Add or replace query parameters of a URL.

    The query is parsed (blank values such as ``q=`` are dropped), updated with `params` and
    encoded again; a list value repeats the key.  Values already percent-encoded in the URL are
    decoded first, so they are never encoded twice, and a ``#`` in the query is taken as data,
    not as the start of a fragment.

    Parameters
    ----------
    url : str
        A URL or a path with an optional query.
    params : dict
        The parameters to set.

    Returns
    -------
    str
        The URL with the new query.

    Examples
    --------
    >>> update_url_params('website.com/?q=', {'pg': 5})
    'website.com/?pg=5'
    >>> update_url_params('website.com?q=xxx', {'pg': 5, 'foo': ['bar', 'baz']})
    'website.com?q=xxx&pg=5&foo=bar&foo=baz'
    >>> update_url_params('/path?param1=foo bar', {'param2': '#2020-01-03#,#2021-02-01#'})
    '/path?param1=foo+bar&param2=%232020-01-03%23%2C%232021-02-01%23'
    """
    parts = urlsplit(url, allow_fragments=False)
    query = parse_qs(parts.query, keep_blank_values=False)
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True)))

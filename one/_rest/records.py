"""Fields of Alyx REST records read in several places: a record's id, its session's id, the URL
of its file.

Alyx list records carry their id in ``id`` or only in ``url`` (``.../datasets/<uuid>``), and a
dataset's session as a URL (``.../sessions/<uuid>``) or a bare id.
"""
from __future__ import annotations

__all__ = ['record_id', 'session_of', 'data_url_of']


def _last_uuid(value) -> str | None:
    text = str(value or '').rstrip('/')
    return text[-36:].lower() if text else None


def record_id(record: dict) -> str | None:
    """The id of a REST record: its ``id``, else the end of its ``url`` (lower case).

    Examples
    --------
    >>> record_id({'url': 'https://alyx.org/sessions/1FD389AC-a2f2-4f4c-a047-7a3b59c50f33/'})
    '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
    >>> record_id({}) is None
    True
    """
    value = record.get('id')
    if value:
        return str(value).lower()
    return _last_uuid(record.get('url'))


def session_of(record: dict) -> str | None:
    """The session id of a dataset record (its ``session`` URL or id), None if it has none.

    Examples
    --------
    >>> session_of({'session': 'https://alyx.org/sessions/1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'})
    '1fd389ac-a2f2-4f4c-a047-7a3b59c50f33'
    """
    return _last_uuid(record.get('session'))


def data_url_of(record: dict) -> str | None:
    """The URL of a dataset's file: that of its first file record that exists and has one."""
    for file_record in record.get('file_records') or []:
        if file_record.get('exists') and file_record.get('data_url'):
            return file_record['data_url']
    return None

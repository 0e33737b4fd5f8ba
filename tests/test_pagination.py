"""Every record of a paginated REST answer exactly once (one._rest.pagination).

Alyx does not order most list queries and PostgreSQL keeps no order between two page requests:
on Alyx 3.6.1 a /datasets query matching 280 records, read in pages of 250, returned 27 records
twice and 27 never.  The replay server (tests/alyx_server.py) reproduces this with
``reorder_pages``: each page request sees the records in another order ('shuffle'), or each page
overlaps the previous one ('overlap', so that one record is never sent); ``max_limit`` makes it
grant short pages only, as a server with a maximum page size would.
"""
import json
import uuid
from collections import Counter

import pytest
from alyx_server import FIXTURES, PASSWORD, USERNAME

import one.webclient as wc
from one._rest.pagination import (
    LIST_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    PaginatedResponse,
    record_identity,
)


@pytest.fixture
def client(alyx_server, tmp_path):
    return wc.AlyxClient(base_url=alyx_server.url, username=USERNAME, password=PASSWORD,
                         cache_dir=tmp_path / 'cache', silent=True)


def _ids(records) -> list:
    return [r['id'] for r in records]


def _page_queries(server, path='/sessions') -> list[str]:
    return [r.query for r in server.requests if r.path == path]


def test_page_sizes(alyx_server, client):
    """A list read lazily is asked for in pages of LIST_PAGE_LIMIT records (one request for most
    answers, a quick first page for broad ones); a query's own limit is kept."""
    alyx_server.page_size = 2  # the server's default page, when no limit is asked
    sessions = client.rest('sessions', 'list', no_cache=True)
    assert isinstance(sessions, list) and len(sessions) == 6
    assert _page_queries(alyx_server) == [f'limit={LIST_PAGE_LIMIT}']
    assert client.page_size == LIST_PAGE_LIMIT == wc.LIST_PAGE_LIMIT == 1_000
    assert client.max_page_size == MAX_PAGE_LIMIT == wc.MAX_PAGE_LIMIT == 10_000
    client.page_size = 4  # settable
    assert isinstance(client.rest('sessions', 'list', no_cache=True), PaginatedResponse)
    assert _page_queries(alyx_server)[-1] == 'limit=4'
    assert len(client.rest('sessions', 'list', no_cache=True, limit=6)) == 6
    assert _page_queries(alyx_server)[-1] == 'limit=6'


def test_shuffled_pages_are_detected_and_repaired(alyx_server, client):
    """Pages of 2 from a server that orders each page request differently: records come twice
    or never; the answer is asked for again until every record is there, once."""
    alyx_server.page_size = alyx_server.max_limit = 2
    alyx_server.reorder_pages('/sessions', 'shuffle')
    sessions = client.rest('sessions', 'list', no_cache=True)
    received = []
    sessions.add_callback(received.extend)
    records = list(sessions)
    expected = sorted(_ids(json.loads((FIXTURES / 'sessions_list_all.json').read_text())[
        'results']))
    assert len(records) == 6 and sorted(_ids(records)) == expected
    assert sessions.repeated > 0 and sessions.refetched > 0  # the fault happened, was repaired
    # each record is handed to the callbacks once, as it is placed
    assert Counter(_ids(received)).most_common(1)[0][1] == 1
    assert sorted(_ids(received) + _ids(records[:2])) == expected
    assert list(sessions) == records  # stable once complete


def test_repaired_with_one_page_when_the_server_allows(alyx_server, client):
    """A raw query read in the server's default pages of 2: the repair asks for the whole
    answer in one page (one query, one order)."""
    alyx_server.page_size = 2
    alyx_server.reorder_pages('/sessions', 'shuffle')
    sessions = client.get('/sessions', clobber=True)
    assert isinstance(sessions, PaginatedResponse)
    records = list(sessions)
    assert len(set(_ids(records))) == 6
    assert 'limit=6&offset=0' in _page_queries(alyx_server)
    assert sessions.repeated > 0


def test_missing_record_that_asking_again_cannot_find(alyx_server, client):
    """Each page overlaps the previous one: the last record is never sent.  The error names
    the query and the numbers."""
    alyx_server.page_size = alyx_server.max_limit = 2
    alyx_server.reorder_pages('/sessions', 'overlap')
    sessions = client.rest('sessions', 'list', subject='ZFM-01935', no_cache=True)
    assert len(sessions) == 4
    with pytest.raises(wc.AlyxPaginationError) as info:
        list(sessions)
    error = info.value
    assert isinstance(error, wc.AlyxError) and isinstance(error, RuntimeError)
    assert error.query.startswith('/sessions?') and 'subject=ZFM-01935' in error.query
    assert (error.count, error.received) == (4, 3)
    assert error.query in str(error) and 'announced 4 records' in str(error)
    assert 'only 3 distinct' in str(error)
    alyx_server.reorder_pages('/sessions', None)  # the server agrees with itself again
    assert len({r['id'] for r in sessions}) == 4


def _dataset_records(url: str, n: int) -> list[dict]:
    """`n` dataset records in Alyx's list format (identified by their URL, as Alyx's are)."""
    records = []
    for i in range(n):
        dset_id = str(uuid.UUID(int=i + 1))
        records.append({'url': f'{url}/datasets/{dset_id}', 'name': f'obj.attr{i}.npy',
                        'session': f'{url}/sessions/{uuid.UUID(int=i % 7 + 1000)}',
                        'collection': 'alf', 'file_size': i, 'hash': None, 'qc': 'NOT_SET',
                        'default_dataset': True, 'file_records': []})
    return records


def test_the_measured_case(alyx_server, client):
    """280 dataset records read in pages of 250 from a server reordering between pages."""
    records = _dataset_records(alyx_server.url, 280)
    alyx_server.add_response('GET', '/datasets?session=any', {
        'count': 280, 'next': None, 'previous': None, 'results': records})
    alyx_server.max_limit = 250
    alyx_server.reorder_pages('/datasets', 'shuffle')
    answer = client.rest('datasets', 'list', session='any', no_cache=True)
    assert isinstance(answer, PaginatedResponse) and answer.limit == 250
    received = list(answer)
    assert sorted(r['url'] for r in received) == sorted(r['url'] for r in records)
    assert answer.repeated > 0


@pytest.mark.parametrize('twice_at', [1, 3], ids=['in-one-page', 'split-between-pages'])
def test_record_really_twice_in_the_answer(alyx_server, client, twice_at):
    """A record the answer holds twice (a join repeating a row: the count includes both) is
    kept twice, whether one page or two pages hold its copies; no error."""
    records = _dataset_records(alyx_server.url, 10)
    records.insert(twice_at + 1, records[twice_at])
    alyx_server.add_response('GET', '/datasets?session=any', {
        'count': 11, 'next': None, 'previous': None, 'results': records})
    alyx_server.max_limit = 4  # pages of 4: the copies at 3 and 4 are split between two
    answer = client.rest('datasets', 'list', session='any', no_cache=True)
    assert isinstance(answer, PaginatedResponse)
    received = list(answer)
    assert [r['url'] for r in received] == [r['url'] for r in records]
    assert answer.is_complete and len(answer) == 11


def test_record_identity():
    assert record_identity({'id': 'a', 'url': 'u'}) == ('id', 'a')
    assert record_identity({'url': 'u', 'name': 'n'}) == ('url', 'u')
    assert record_identity({'name': 'n'}) == ('name', 'n')
    assert record_identity({'x': 1}) is None and record_identity('text') is None

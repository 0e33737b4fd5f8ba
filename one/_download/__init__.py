"""Parallel, resumable and verified file downloads over HTTP(S) and S3.

How one file is downloaded
--------------------------
1. Unless ``clobber`` is set, a destination that already exists and matches the expected size
   and md5 is kept: nothing is downloaded.
2. The data are streamed into ``.<name>.part`` beside the destination in 1 MiB blocks, and
   hashed (md5) as they arrive.  That partial file is locked (``flock``) while it is written,
   so that processes downloading the same file never write it at the same time: the second one
   waits, then finds the verified file and skips it.  A partial file left by an interrupted
   transfer, or by a process that died (the kernel drops its lock), is resumed with an HTTP
   ``Range`` request; its bytes are hashed first.
3. The size and md5 are checked; only then is the file moved over the destination with
   `os.replace`.  A bad file is thrown away and downloaded once more from scratch; if it is bad
   again, `ChecksumMismatch` or `SizeMismatch` is raised and the destination is left untouched.

An answer shorter than 1 MiB with a known length (most ALF datasets) is read whole into memory
instead, hashed there, and written to the (locked) partial file in one write only once its size
and md5 are right; then renamed as above.  A bad or cut small answer never reaches the disk.

Connection errors, timeouts and HTTP 408, 429 and 5xx answers are retried with exponential
backoff (honouring ``Retry-After``); a large transfer cut in the middle resumes where it
stopped (a small one starts again).  A read timeout is retried once, not more (`DownloadTimeout`).
Every request has connect and read timeouts: ``timeout=``, else ``ONE_HTTP_TIMEOUT``, else
(10 s, 60 s) (`one._lib.http_timeouts`); S3 clients made here get the same (`s3_config`).
Errors that retrying cannot fix (404, 403, a file that stays bad...) raise at once.  Every error
is a `DownloadError` naming the file and its URL.  The partial file is removed when a download
fails for a reason that resuming cannot fix; after a connection failure or an interruption it
is kept, to be resumed.

Modules, each importing only those above it
-------------------------------------------
- `defaults`: the tunable defaults (threads, retries, timeouts, backoff, block size).
- `errors`: the `DownloadError` tree, and the signals the layers below the engine raise.
- `paths`: `safe_join`, `url_to_local_path` and URL quoting.
- `task`: `DownloadTask` (what to download) and `Body` (an answer being read).
- `part`: the locked partial file.  `progress`: the progress bar.  `hashing`: md5 helpers.
- `connections`: each worker thread's buffer and HTTP connections, kept between batches.
- `http_headers`, `http_transport`: the HTTP(S) transport (urllib3, requests when needed).
- `s3_transport`: the S3 transport (boto3, imported when first needed).
- `engine`: one file: keep, stream, resume, retry, verify, rename.
- `batch`: `download_files`, the worker threads of a batch and its outcomes.
- `helpers`: ONE's helpers built on it (``http_download_file``...), re-exported by
  `one.webclient`.
"""
from one._download.batch import download_files
from one._download.defaults import (
    BACKOFF,
    CHUNK_SIZE,
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    RETRIES,
    TIMEOUT,
)
from one._download.errors import (
    ChecksumMismatch,
    DownloadConnectionError,
    DownloadError,
    DownloadTimeout,
    HTTPStatusError,
    SizeMismatch,
    UnsafePath,
    download_failure,
)
from one._download.helpers import (
    dataset_record_to_url,
    file_record_to_url,
    http_download_file,
    http_download_file_list,
)
from one._download.paths import safe_join, url_to_local_path
from one._download.s3_transport import s3_config
from one._download.task import DownloadTask

__all__ = [
    'N_THREADS', 'CHUNK_SIZE', 'RETRIES', 'TIMEOUT', 'BACKOFF', 'MAX_BACKOFF', 'MAX_RETRY_AFTER',
    'DownloadTask', 'download_files', 'safe_join', 'url_to_local_path', 'http_download_file',
    'http_download_file_list', 'file_record_to_url', 'dataset_record_to_url', 'DownloadError',
    'ChecksumMismatch', 'SizeMismatch', 'HTTPStatusError', 'DownloadConnectionError',
    'UnsafePath', 'DownloadTimeout', 's3_config', 'download_failure',
]


def __getattr__(name: str):
    if name == 'N_THREADS':  # read at use: a bad ONE_HTTP_DL_THREADS is named where used
        from one._download import defaults

        return defaults.n_threads()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

"""Exceptions and warnings raised when ALF data cannot be found, parsed or disambiguated.

Every error carries a ``message`` (what was asked for) and a class-level ``explanation`` (what
the error means in general).  ``str(err)`` shows both unless the error was created with
``terse=True``.
"""

__all__ = [
    'ALFError',
    'AlyxSubjectNotFound',
    'ALFObjectNotFound',
    'ALFMultipleObjectsFound',
    'ALFMultipleCollectionsFound',
    'ALFMultipleRevisionsFound',
    'ALFInvalid',
    'DatasetNotLocked',
    'ALFWarning',
]


class ALFError(Exception):
    """Base class for all errors about ALF data.

    Parameters
    ----------
    *args
        A single string is used as the message; any other arguments are quoted and joined,
        e.g. ``ALFError('a', 'b')`` has the message ``'"a", "b"'``.
    terse : bool
        When True, ``str()`` shows the message only, without the explanation.
    """

    explanation = ''

    def __init__(self, *args, terse: bool = False):
        if len(args) == 1 and isinstance(args[0], str):
            self.message = args[0]
        elif args:
            self.message = '"' + '", "'.join(map(str, args)) + '"'
        else:
            self.message = ''
        self.terse = terse
        super().__init__(self.message)

    def __str__(self) -> str:
        if not self.message and not self.explanation:
            return ''
        if self.terse:
            return self.message
        return f'{self.message} \n {self.explanation} '


class AlyxSubjectNotFound(ALFError):
    """The subject was not found in the database."""

    explanation = 'The subject was not found in Alyx database'


class ALFObjectNotFound(ALFError):
    """No dataset or ALF object matched the query."""

    explanation = (
        'The ALF object was not found.  This may occur if the object or namespace or '
        'incorrectly formatted e.g. the object "_ibl_trials.intervals.npy" would be found with '
        'the filters `object="trials", namespace="ibl"`'
    )


class ALFMultipleObjectsFound(ALFError):
    """More than one dataset or object matched where exactly one was expected."""

    explanation = (
        'Dataset files belonging to more than one object found.  Please restrict the query '
        'further, for instance by specifying the namespace, timescale or extension.'
    )


class ALFMultipleCollectionsFound(ALFError):
    """Matching datasets lie in more than one collection."""

    explanation = (
        'The matching object/file(s) belong to more than one collection.  ALF names must be '
        'unique within a collection; please specify the collection to load from.'
    )


class ALFMultipleRevisionsFound(ALFError):
    """Matching datasets exist in more than one revision."""

    explanation = (
        'The matching object/file(s) belong to more than one revision.  Please specify the '
        'revision to load, or mark one of them as the default revision.'
    )


class ALFInvalid(ALFError, ValueError):
    """A file name or path does not follow the ALF specification."""

    explanation = (
        'The file path provided does not match the ALF path specification defined in '
        '`one.alf.spec`.'
    )


class DatasetNotLocked(ALFObjectNotFound):
    """A load asked for a dataset, or a version of it, that the instance's lock file does not
    list (``One(..., lock=FILE)``).

    It is an `ALFObjectNotFound`: under a lock, datasets outside it are not there for this
    instance, so a script that skips sessions without some data skips the same sessions as
    the run that made the lock.  Catch `DatasetNotLocked` first to tell the two apart.
    """

    explanation = ('The dataset is not in the lock file this ONE instance was created with, '
                   'or the lock lists another version of it.')


class ALFWarning(Warning):
    """Cautions about ALF data, typically about which revision was chosen."""

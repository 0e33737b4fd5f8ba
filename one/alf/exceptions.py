"""Exceptions and warnings raised when ALF data cannot be found, parsed or disambiguated.

Every error carries a ``message`` (what was asked for) and a class-level ``explanation`` (what
the error means in general, in one short sentence).  ``str(err)`` is the message when it is a
sentence of its own, as every message one-next writes is (it names what was asked for, where it
was looked for and what exists instead).  A bare name or list of names, as in
``ALFMultipleCollectionsFound('alf/probe00', 'alf/probe01')``, is followed by the explanation;
no message gives the explanation alone; ``terse=True`` gives the message alone.
"""

import re

__all__ = [
    'ALFError',
    'AlyxSubjectNotFound',
    'ALFObjectNotFound',
    'ALFMultipleObjectsFound',
    'ALFMultipleCollectionsFound',
    'ALFMultipleRevisionsFound',
    'ALFInvalid',
    'ALFWarning',
]  # ONE-api's names; DatasetNotLocked (lock files) is one-next's


_NAMES = re.compile(r'^(\S+|"[^"]*"(, "[^"]*")*)$')  # 'name' or '"a", "b"': not a sentence


class ALFError(Exception):
    """Base class for all errors about ALF data.

    Parameters
    ----------
    *args
        A single string is used as the message; any other arguments are quoted and joined,
        e.g. ``ALFError('a', 'b')`` has the message ``'"a", "b"'``.
    terse : bool
        When True, ``str()`` shows the message only, without the explanation.

    Examples
    --------
    >>> str(ALFMultipleCollectionsFound('alf/probe00', 'alf/probe01'))
    '"alf/probe00", "alf/probe01": the matching datasets lie in these collections; choose one \
with the collection argument'
    >>> str(ALFObjectNotFound('ALF object "spikes" not found in session 1f2e'))
    'ALF object "spikes" not found in session 1f2e'
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
        if self.terse or not self.explanation:
            return self.message
        if not self.message:
            return self.explanation
        if _NAMES.match(self.message):  # a bare name or list of names needs the explanation
            return f'{self.message}: {self.explanation}'
        return self.message


class AlyxSubjectNotFound(ALFError):
    """The subject was not found in the database."""

    explanation = 'no such subject in the Alyx database'


class ALFObjectNotFound(ALFError):
    """No dataset or ALF object matched the query."""

    explanation = ('no dataset matches; check the object, attribute, namespace and collection '
                   '(e.g. "_ibl_trials.intervals.npy" is namespace "ibl", object "trials", '
                   'attribute "intervals")')


class ALFMultipleObjectsFound(ALFError):
    """More than one dataset or object matched where exactly one was expected."""

    explanation = ('several datasets match where one was expected; restrict the query, e.g. '
                   'with the collection, namespace, attribute or extension')


class ALFMultipleCollectionsFound(ALFError):
    """Matching datasets lie in more than one collection."""

    explanation = ('the matching datasets lie in these collections; choose one with the '
                   'collection argument')


class ALFMultipleRevisionsFound(ALFError):
    """Matching datasets exist in more than one revision."""

    explanation = ('the matching datasets exist in these revisions; choose one with the '
                   'revision argument, or mark one as the default revision')


class ALFInvalid(ALFError, ValueError):
    """A file name or path does not follow the ALF specification."""

    explanation = 'not a valid ALF name or path (see one.alf.spec.describe)'


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

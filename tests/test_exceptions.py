"""Tests for one.alf.exceptions: message formatting and the exception hierarchy."""
import warnings

import pytest

from one.alf import exceptions
from one.alf.exceptions import (
    ALFError,
    ALFInvalid,
    ALFMultipleCollectionsFound,
    ALFMultipleObjectsFound,
    ALFMultipleRevisionsFound,
    ALFObjectNotFound,
    ALFWarning,
    AlyxSubjectNotFound,
)

SUBCLASSES = (AlyxSubjectNotFound, ALFObjectNotFound, ALFMultipleObjectsFound,
              ALFMultipleCollectionsFound, ALFMultipleRevisionsFound, ALFInvalid)


def test_public_names():
    assert set(exceptions.__all__) == {
        'ALFError', 'AlyxSubjectNotFound', 'ALFObjectNotFound', 'ALFMultipleObjectsFound',
        'ALFMultipleCollectionsFound', 'ALFMultipleRevisionsFound', 'ALFWarning', 'ALFInvalid'}


@pytest.mark.parametrize('args, message', [
    (('foo',), 'foo'),
    (('',), ''),
    (([0, 1, 2],), '"[0, 1, 2]"'),
    (('a', 'b'), '"a", "b"'),
    ((1,), '"1"'),
    (('a', 2, None), '"a", "2", "None"'),
    ((), ''),
])
def test_message(args, message):
    err = ALFError(*args)
    assert err.message == message
    # The base class has no explanation: str() is the message
    assert str(err) == message
    assert str(ALFError(*args, terse=True)) == message


@pytest.mark.parametrize('cls', SUBCLASSES)
def test_explanation(cls):
    """A sentence stands alone; a bare name gets the explanation; no stock paragraph."""
    explanation = cls.explanation
    assert isinstance(explanation, str) and explanation
    assert '\n' not in explanation and len(explanation) < 200
    assert explanation == explanation.strip() and explanation[0].islower()
    # a bare name or list of names: what it means follows
    assert str(cls('spikes.times')) == f'spikes.times: {explanation}'
    assert str(cls('a', 'b')) == f'"a", "b": {explanation}'
    assert str(cls('spikes.times', terse=True)) == 'spikes.times'
    # a sentence of its own is shown as it is
    sentence = 'ALF object "spikes" not found in session 1; objects present: trials'
    assert str(cls(sentence)) == sentence
    # no message: the explanation alone, unless terse
    assert str(cls()) == explanation
    assert str(cls(terse=True)) == ''


def test_explanations_read_well():
    assert 'may occur if the object or namespace or incorrectly' not in \
        ALFObjectNotFound.explanation
    assert 'collection' in ALFMultipleCollectionsFound.explanation
    assert 'revision' in ALFMultipleRevisionsFound.explanation


def test_base_explanation_is_empty():
    assert ALFError.explanation == ''
    assert str(ALFError()) == ''


def test_hierarchy():
    for cls in SUBCLASSES:
        assert issubclass(cls, ALFError)
        assert issubclass(cls, Exception)
    assert issubclass(ALFError, Exception)
    assert issubclass(ALFInvalid, ValueError)
    assert not issubclass(ALFObjectNotFound, ValueError)
    assert not issubclass(ALFError, Warning)


def test_alf_invalid_caught_as_value_error():
    with pytest.raises(ValueError, match='spike_train.npy'):
        raise ALFInvalid('spike_train.npy')
    try:
        raise ALFInvalid('x')
    except ALFError as err:
        assert err.message == 'x'


def test_raise_and_catch():
    with pytest.raises(ALFError) as info:
        raise ALFObjectNotFound('trials')
    assert info.value.message == 'trials'
    assert 'trials' in str(info.value)
    assert info.type is ALFObjectNotFound


def test_alf_warning():
    assert issubclass(ALFWarning, Warning)
    assert not issubclass(ALFWarning, ALFError)
    with pytest.warns(ALFWarning, match='No default revision'):
        warnings.warn('No default revision', ALFWarning)
    # Users filter on the category
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        warnings.filterwarnings('ignore', category=ALFWarning)
        warnings.warn('ignored', ALFWarning)


def test_str_survives_pickling():
    import pickle

    for err in (ALFMultipleCollectionsFound('alf/probe00', 'alf/probe01'),
                ALFObjectNotFound('ALF object "x" not found in session 1'),
                ALFInvalid('spike_train.npy')):
        assert str(pickle.loads(pickle.dumps(err))) == str(err)

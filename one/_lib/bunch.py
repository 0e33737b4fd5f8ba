"""A dict with attribute access, and small helpers for list-like arguments."""
from __future__ import annotations

import copy as copy_module
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ['Bunch', 'ensure_list', 'flatten']


class Bunch(dict):
    """A dict whose keys can also be read and written as attributes.

    Examples
    --------
    >>> b = Bunch(a=1)
    >>> b.b = 2
    >>> b.a + b['b']
    3
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self):
        return [*super().__dir__(), *(k for k in self if isinstance(k, str))]

    def __getstate__(self):
        return dict(self)

    def __setstate__(self, state):
        self.update(state)

    def copy(self, deep: bool = False) -> Bunch:
        """Return a shallow (default) or deep copy."""
        return copy_module.deepcopy(self) if deep else self.__class__(self)

    def save(self, npz_file, compress: bool = False) -> None:
        """Save the values to a numpy ``.npz`` file."""
        (np.savez_compressed if compress else np.savez)(npz_file, **self)

    @classmethod
    def load(cls, npz_file) -> Bunch:
        """Load a Bunch saved with `save`."""
        if not Path(npz_file).exists():
            raise FileNotFoundError(f'{npz_file} not found')
        with np.load(npz_file) as data:
            return cls({k: data[k] for k in data.files})


def ensure_list(value, exclude_type=(str, dict)) -> list:
    """Wrap `value` in a list unless it is already a non-string iterable."""
    if isinstance(value, exclude_type) or not isinstance(value, Iterable):
        return [value]
    return value


def flatten(x) -> list:
    """Flatten nested iterables (strings and dicts are kept whole)."""
    out = []
    for item in x:
        if isinstance(item, Iterable) and not isinstance(item, (str, bytes, dict)):
            out.extend(flatten(item))
        else:
            out.append(item)
    return out

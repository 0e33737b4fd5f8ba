"""Parameters of the remote download clients, and the base class of those clients.

The parameters of all remote clients (e.g. Globus endpoints) are kept in one JSON file,
``.remote`` in ONE's parameter folder (`one.params.get_params_dir`, ``~/.one`` as for
ONE-api), with one entry per client:
``{"globus": {"default": {...}, "admin": {...}}, "aws": {...}}``.  The file is readable by its
owner only (mode 0600).

Parameters are returned as ONE-api returns them: a set of parameters (a dict in the file) is an
immutable `one.params.IBLParams` (attributes, ``as_dict()``, ``set(key, value)``); the values
nested in it are dicts (`one._lib.bunch.Bunch`, whose keys are also attributes).
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from one._lib.bunch import Bunch
from one._lib.json_files import read_json_dict, write_json_dict

__all__ = ['PROC_PRECEDENCE', 'ALYX_JSON', 'PAR_ID_STR', 'load_client_params',
           'save_client_params', 'DownloadClient']

PAR_ID_STR = 'one/remote'
"""Identifier of the remote parameters (file ``.remote`` in the parameter folder)."""

PROC_PRECEDENCE = ('aws', 'http', 'globus', 'kachary')
"""Order in which the download protocols are tried."""

ALYX_JSON = {
    'aws': ('bucket_name', 'Access key ID', 'Secret access key', 'region_name'),
}
"""Keys that the ``json`` field of an Alyx data repository holds, per protocol."""


def _params_file() -> Path:
    from one.params import _params_file as params_file

    return params_file(PAR_ID_STR.rsplit("/", 1)[-1])


def _to_bunch(value: Any) -> Any:
    if isinstance(value, dict):
        return Bunch({k: _to_bunch(v) for k, v in value.items()})
    return value


def _to_params(value: Any) -> Any:
    """A dict as an `IBLParams` (None if empty) whose dict values are Bunches; others as is."""
    if not isinstance(value, dict):
        return value
    from one.params import IBLParams

    return IBLParams.from_dict({k: _to_bunch(v) for k, v in value.items()})


def load_client_params(client_key: str | None = None, assert_present: bool = True):
    """Load the parameters of the remote clients, or of one of them.

    Parameters
    ----------
    client_key : str, optional
        The client, e.g. ``'globus'``; dots walk nested entries (``'globus.admin'``).  All the
        parameters are returned when None.
    assert_present : bool
        Raise when the parameters are missing; otherwise return None.

    Returns
    -------
    one.params.IBLParams or Any
        The parameters (an immutable named tuple with ``as_dict()`` and ``set(key, value)``;
        dicts nested in it are `Bunch` objects), a value that is not a dict as it is, or None
        when missing and `assert_present` is False.

    Raises
    ------
    FileNotFoundError
        No remote parameters were saved (and `assert_present` is True).
    AttributeError
        `client_key` is not in the parameters (and `assert_present` is True).
    """
    path = _params_file()
    pars = read_json_dict(path, private=True)
    if pars is None:
        if assert_present:
            raise FileNotFoundError(f'No remote client parameters found in "{path}"')
        return None
    if client_key:
        for key in client_key.split('.'):
            if not isinstance(pars, dict) or key not in pars:
                if assert_present:
                    raise AttributeError(f'No parameters for the remote client "{client_key}" '
                                         f'in "{path}"')
                return None
            pars = pars[key]
    return _to_params(pars)


def save_client_params(new_pars: dict, client_key: str | None = None) -> None:
    """Save the parameters of the remote clients, or of one of them.

    Parameters
    ----------
    new_pars : dict
        Without `client_key`: all the parameters, one dict per client.  With it: that
        client's parameters.
    client_key : str, optional
        The client to update (dots walk nested entries, created as needed); the other clients'
        parameters are kept.

    Raises
    ------
    ValueError
        `client_key` is None and some values of `new_pars` are not dicts.
    """
    from one._lib.locks import file_lock

    new_pars = dict(new_pars.as_dict() if hasattr(new_pars, 'as_dict') else new_pars)
    if client_key is None and not all(isinstance(v, dict) for v in new_pars.values()):
        raise ValueError('Expected a dict of client parameters: one dict per client')
    path = _params_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + '.lock'), timeout=30):
        if client_key is None:
            pars = new_pars
        else:
            pars = read_json_dict(path) or {}
            node = pars
            *parents, last = client_key.split('.')
            for key in parents:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            node[last] = new_pars
        write_json_dict(path, pars, private=True)


class DownloadClient(abc.ABC):
    """Base class of the remote download clients."""

    @abc.abstractmethod
    def to_address(self, data_path, *args, **kwargs):
        """Return the remote address of a data file."""

    @abc.abstractmethod
    def download_file(self, file_address, *args, **kwargs):
        """Download one file."""

    @staticmethod
    @abc.abstractmethod
    def setup(*args, **kwargs):
        """Set up the client's parameters."""

    @staticmethod
    def repo_from_alyx(name: str, alyx) -> dict:
        """Return the Alyx record of a data repository.

        Parameters
        ----------
        name : str
            The repository name.
        alyx : one.webclient.AlyxClient
            A connected Alyx client.

        Returns
        -------
        dict
            The ``data-repository`` record.
        """
        return alyx.rest('data-repository', 'read', id=name)

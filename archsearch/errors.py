"""Error types that mean "the user gave us something we cannot use".

The CLI turns any :class:`ArchsearchError` into a one-line message on stderr and exit
code 2. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class ArchsearchError(Exception):
    """Bad input: a malformed file, an unknown name, a nonsensical size."""


class DataError(ArchsearchError):
    """A dataset is missing, malformed or unsupported."""


class ArchError(ArchsearchError):
    """An architecture (JSON file, genotype or name) is malformed or not in the space."""


class ConfigError(ArchsearchError):
    """A setting is out of range or inconsistent with another one."""

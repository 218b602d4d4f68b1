"""`Arch`: one architecture as plain, versioned JSON.

An Arch is a frozen mapping from decision label to chosen value, tagged with the space it
belongs to and a hash of that space's dimensions, so that loading it into a changed space
fails loudly. Human-readable views (a DARTS genotype, say) are renderings produced by the
space and stored alongside for people, never read back. No pickle, no eval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from archsearch.errors import ArchError

ARCH_FORMAT = "archsearch.arch/1"


class Arch(Mapping[str, Any]):
    """A frozen label -> value mapping plus the name and hash of its space."""

    __slots__ = ("_choices", "space", "space_args", "space_hash")

    def __init__(self, choices: Mapping[str, Any], *, space: str, space_hash: str,
                 space_args: Mapping[str, Any] | None = None) -> None:
        self._choices = dict(choices)
        self.space = space
        self.space_hash = space_hash
        # The arguments that rebuild the space (JSON values), e.g. {"nodes": 4, "ops": [...]}.
        self.space_args = dict(space_args or {})

    def __getitem__(self, label: str) -> Any:
        return self._choices[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._choices)

    def __len__(self) -> int:
        return len(self._choices)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Arch):
            return NotImplemented
        return (self._choices, self.space, self.space_hash) == (
            other._choices, other.space, other.space_hash)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"Arch(space={self.space!r}, {len(self)} choices, {self.fingerprint()[:12]})"

    def fingerprint(self) -> str:
        """A stable hash of the choices, for deduplication and file names."""
        text = json.dumps(self._choices, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"{self.space_hash}|{text}".encode()).hexdigest()

    def to_json(self, **renderings: str) -> dict[str, Any]:
        """The canonical JSON document; `renderings` (e.g. genotype=...) are added for people."""
        doc: dict[str, Any] = {
            "format": ARCH_FORMAT,
            "space": self.space,
            "space_hash": self.space_hash,
            "space_args": dict(self.space_args),
            "choices": dict(self._choices),
        }
        doc.update(renderings)
        return doc

    @classmethod
    def from_json(cls, doc: Any, *, source: str = "architecture") -> Arch:
        """Parse a document made by `to_json`; anything else raises ArchError."""
        if not isinstance(doc, dict):
            raise ArchError(f"{source}: expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != ARCH_FORMAT:
            raise ArchError(f"{source}: 'format' must be {ARCH_FORMAT!r}, "
                            f"got {doc.get('format')!r}")
        for key in ("space", "space_hash"):
            if not isinstance(doc.get(key), str):
                raise ArchError(f"{source}: missing or non-string {key!r}")
        choices = doc.get("choices")
        if not isinstance(choices, dict) or not all(isinstance(k, str) for k in choices):
            raise ArchError(f"{source}: 'choices' must be an object mapping labels to values")
        space_args = doc.get("space_args", {})
        if not isinstance(space_args, dict):
            raise ArchError(f"{source}: 'space_args' must be an object")
        return cls(choices, space=doc["space"], space_hash=doc["space_hash"],
                   space_args=space_args)

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        """Read an architecture JSON file; a missing or malformed file raises ArchError."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ArchError(f"cannot read architecture file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ArchError(f"architecture file {path} is not UTF-8 text") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"architecture file {path} is not valid JSON: {exc.msg} "
                            f"(line {exc.lineno})") from None
        return cls.from_json(doc, source=str(path))


def hash_dims(dims_json: Any) -> str:
    """`sha256:<hex>` of the ordered dimensions' JSON: the identity of a space."""
    text = json.dumps(dims_json, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

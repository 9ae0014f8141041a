"""A minimal column table: numpy arrays plus explicit null masks.

pandas/pyarrow would work too, but the writers need exactly three things (column arrays, which
cells are NULL, row slicing) and keeping them as plain numpy arrays keeps every step typed and
cheap to slice into insert batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from pipelines.demo.text import S, to_fixed

Arr = npt.NDArray[Any]


@dataclass
class Frame:
    """Columns of equal length; ``nulls[name]`` is True where that cell is SQL NULL."""

    columns: dict[str, Arr]
    nulls: dict[str, Arr] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def null_mask(self, name: str) -> Arr:
        """The NULL mask of one column (all False when the column has none)."""
        mask = self.nulls.get(name)
        return mask if mask is not None else np.zeros(len(self), dtype=bool)

    def take(self, index: Arr | slice) -> Frame:
        """Rows by position (fancy index or slice), keeping masks aligned."""
        return Frame(
            {k: v[index] for k, v in self.columns.items()},
            {k: v[index] for k, v in self.nulls.items()},
        )

    def with_column(self, name: str, values: Arr, nulls: Arr | None = None) -> Frame:
        """A copy with one more (or a replaced) column."""
        columns = dict(self.columns)
        columns[name] = values
        masks = dict(self.nulls)
        if nulls is not None:
            masks[name] = nulls
        else:
            masks.pop(name, None)
        return Frame(columns, masks)

    @staticmethod
    def concat(frames: list[Frame]) -> Frame:
        """Stack frames with identical columns (masks are filled with False where absent)."""
        frames = [f for f in frames if f.columns]
        if not frames:
            return Frame({})
        names = list(frames[0].columns)
        columns = {n: np.concatenate([f.columns[n] for f in frames]) for n in names}
        masked = {n for f in frames for n in f.nulls}
        nulls = {n: np.concatenate([f.null_mask(n) for f in frames]) for n in masked}
        return Frame(columns, nulls)


R = TypeVar("R", bound="ArrayRecord")


@dataclass
class ArrayRecord:
    """Base for dataclasses whose fields are aligned numpy arrays (one element per row).

    Subclasses get row selection, concatenation and a flat ``{prefix.field: array}`` form used
    to persist them in one ``.npz`` file.
    """

    def __len__(self) -> int:
        first = fields(self)[0].name
        return len(getattr(self, first))

    def take(self: R, index: Arr | slice) -> R:
        """Rows by position."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls: type[R], parts: list[R]) -> R:
        """Rows of all parts, in order (at least one part is required)."""
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def to_arrays(self, prefix: str) -> dict[str, Arr]:
        """``{prefix.field: array}``; string fields are converted to fixed-width unicode."""
        out: dict[str, Arr] = {}
        for f in fields(self):
            value: Arr = getattr(self, f.name)
            if value.dtype.kind == "T":
                value = to_fixed(value)
            out[f"{prefix}.{f.name}"] = value
        return out

    @classmethod
    def from_arrays(cls: type[R], data: Mapping[str, Arr], prefix: str) -> R:
        """Inverse of :meth:`to_arrays` (unicode fields come back as ``StringDType``)."""
        values: dict[str, Arr] = {}
        for f in fields(cls):
            value = data[f"{prefix}.{f.name}"]
            values[f.name] = value.astype(S) if value.dtype.kind == "U" else value
        return cls(**values)

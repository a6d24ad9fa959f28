"""Results: readouts of every patch with named axes, and metrics computed from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .readouts import READOUT_FIELDS


class LabeledArray:
    """A numpy array with axis names, coordinates and labels; ``np.asarray`` gives the data."""

    def __init__(
        self,
        data: np.ndarray,
        axes: tuple[str, ...],
        coords: dict[str, tuple[int, ...]],
        labels: dict[str, tuple[str, ...]],
    ) -> None:
        self.data = data
        self.axes = axes
        self.coords = coords
        self.labels = labels

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __getitem__(self, index: Any) -> Any:
        return self.data[index]

    def __repr__(self) -> str:
        dims = ", ".join(f"{a}={n}" for a, n in zip(self.axes, self.data.shape, strict=True))
        return f"LabeledArray({dims})\n{np.array2string(self.data, precision=3)}"


@dataclass(frozen=True, eq=False)
class PatchResult:
    """Readouts of a sweep or a confirmatory patch, with baselines and metadata.

    ``readouts`` has shape ``(*axis sizes, n_pairs, len(READOUT_FIELDS))``; NaN marks patches
    that did not run (a cancelled sweep, see ``complete``).
    """

    site: str
    direction: str
    axes: tuple[str, ...]
    coords: dict[str, tuple[int, ...]]
    labels: dict[str, tuple[str, ...]]
    readouts: np.ndarray
    clean_readouts: np.ndarray
    corrupted_readouts: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    complete: bool = True

    @property
    def shape(self) -> tuple[int, ...]:
        return self.readouts.shape[: len(self.axes)]

    @property
    def method(self) -> str:
        """ "exact", or "attribution" for a first-order estimate (see ``metadata["note"]``)."""
        return self.metadata.get("method", "exact")

    @property
    def n_pairs(self) -> int:
        return self.readouts.shape[-2]

    def values(
        self, metric: str = "logit_diff", normalized: bool = False, per_pair: bool = False
    ) -> LabeledArray:
        """The metric for every patch.

        Args:
            metric: a name from ``pw.METRICS`` (``logit_diff``, ``prob_correct``, ...).
            normalized: scale so that 0 is the base run of the direction and 1 the other run
                (denoising: corrupted → clean; noising: clean → corrupted).
            per_pair: keep the pairs apart in a last axis ``pair`` instead of averaging them.
        """
        data = metrics.compute(
            metric,
            self.readouts,
            self.clean_readouts,
            self.corrupted_readouts,
            normalized=normalized,
            per_pair_values=per_pair,
        )
        axes, coords, labels = self.axes, dict(self.coords), dict(self.labels)
        if per_pair:
            axes = (*axes, "pair")
            coords["pair"] = tuple(range(self.n_pairs))
            labels["pair"] = tuple(f"pair {i}" for i in range(self.n_pairs))
        return LabeledArray(data, axes, coords, labels)

    def baselines(self, metric: str = "logit_diff") -> dict[str, float]:
        """Unpatched clean and corrupted values of ``metric`` (a ``pw.METRICS`` name),
        averaged over pairs."""
        return metrics.baselines(metric, self.clean_readouts, self.corrupted_readouts)

    def normalization_ok(self, metric: str = "logit_diff") -> bool:
        """Whether the baselines of ``metric`` differ enough for normalised values to mean
        anything."""
        b = self.baselines(metric)
        return abs(b["clean"] - b["corrupted"]) >= metrics.NORMALIZATION_EPS

    def to_pandas(self, per_pair: bool = False) -> Any:
        """Long format: a row per patch, a column per metric, raw and normalised.

        Args:
            per_pair: a row per patch and pair (column ``pair``) instead of pair means.
        """
        import pandas as pd

        columns: dict[str, Any] = {}
        axes = self.axes + (("pair",) if per_pair else ())
        index = np.indices(self.shape + ((self.n_pairs,) if per_pair else ())).reshape(
            len(axes), -1
        )
        for axis, idx in zip(axes, index, strict=True):
            if axis == "pair":
                columns["pair"] = idx
                continue
            columns[axis] = np.asarray(self.coords[axis])[idx]
            columns[f"{axis}_label"] = np.asarray(self.labels[axis])[idx]
        for name in metrics.METRICS:
            for normalized in (False, True):
                values = np.asarray(self.values(name, normalized, per_pair)).reshape(-1)
                columns[f"{name}_normalized" if normalized else name] = values
        return pd.DataFrame(columns)

    def plot(
        self,
        metric: str = "logit_diff",
        normalized: bool = True,
        ax: Any = None,
        title: str = "",
        scale: str | float = "auto",
    ) -> Any:
        """A matplotlib heatmap (diverging, centred on 0) titled with its largest effect;
        returns the figure. Values beyond the colour scale are circled.

        Args:
            metric: a name from ``pw.METRICS``.
            normalized: plot normalised values (see :meth:`values`).
            ax: a matplotlib axes to draw into (default: a new figure).
            title: the plot's title (default: site, direction and metric).
            scale: ``"auto"`` (±1 = the whole gap when normalised, else the largest |value|),
                ``"gap"``, ``"fit"`` or a positive number.
        """
        from .plotting import plot_result

        return plot_result(self, metric, normalized, ax=ax, title=title, scale=scale)

    def save(self, path: str | Path) -> Path:
        """Write to the ``.npz`` file ``path`` (returned); load with ``PatchResult.load``."""
        path = Path(path)
        header = {
            "site": self.site,
            "direction": self.direction,
            "axes": list(self.axes),
            "coords": {k: list(v) for k, v in self.coords.items()},
            "labels": {k: list(v) for k, v in self.labels.items()},
            "metadata": self.metadata,
            "complete": self.complete,
            "readout_fields": list(READOUT_FIELDS),
        }
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                header=np.array(json.dumps(header)),
                readouts=self.readouts,
                clean_readouts=self.clean_readouts,
                corrupted_readouts=self.corrupted_readouts,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> PatchResult:
        """A result written by :meth:`save` to the ``.npz`` file ``path``."""
        with np.load(Path(path), allow_pickle=False) as f:
            header = json.loads(str(f["header"]))
            if header["readout_fields"] != list(READOUT_FIELDS):
                raise ValueError(f"{path} was saved with other readout fields; re-run the sweep")
            return cls(
                site=header["site"],
                direction=header["direction"],
                axes=tuple(header["axes"]),
                coords={k: tuple(v) for k, v in header["coords"].items()},
                labels={k: tuple(v) for k, v in header["labels"].items()},
                readouts=f["readouts"],
                clean_readouts=f["clean_readouts"],
                corrupted_readouts=f["corrupted_readouts"],
                metadata=header["metadata"],
                complete=header["complete"],
            )

"""Results: readouts of every patch with named axes, and metrics computed from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

import numpy as np

from . import metrics, spread
from .readouts import READOUT_FIELDS

_SAVED_ARRAYS = ("header", "readouts", "clean_readouts", "corrupted_readouts")


def _unreadable(path: Path, error: BaseException) -> ValueError:
    what = f"missing {error}" if isinstance(error, KeyError) else type(error).__name__
    return ValueError(
        f"{path} is not a PatchResult file saved by this patchwidget version, or it is damaged "
        f"({what}): save the result again with result.save(path)"
    )


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

    def stderr(self, metric: str = "logit_diff", normalized: bool = False) -> LabeledArray:
        """Standard error over pairs of every patch's mean (what ``values`` shows). Normalised:
        the standard error of the pairs' effects (patched minus their own corrupted value) over
        the baselines' difference, so the spread of the baselines themselves does not count."""
        per_pair = np.asarray(self.values(metric, per_pair=True))
        if normalized:
            clean, corrupted = self._baseline_values(metric)
            data = spread.normalized_standard_error(per_pair, clean, corrupted)
        else:
            data = spread.standard_error(per_pair)
        return LabeledArray(data, self.axes, dict(self.coords), dict(self.labels))

    def ci(
        self,
        metric: str = "logit_diff",
        normalized: bool = False,
        level: float = 0.95,
        n_resamples: int = 2000,
        seed: int = 0,
    ) -> tuple[LabeledArray, LabeledArray]:
        """(low, high): a seeded percentile-bootstrap interval over pairs of every patch's mean;
        normalised intervals resample the baselines with the pairs."""
        per_pair = np.asarray(self.values(metric, per_pair=True))
        clean, corrupted = self._baseline_values(metric) if normalized else (None, None)
        low, high = spread.bootstrap_interval(per_pair, clean, corrupted, level, n_resamples, seed)
        return tuple(  # type: ignore[return-value]
            LabeledArray(x, self.axes, dict(self.coords), dict(self.labels)) for x in (low, high)
        )

    def _baseline_values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        return (
            metrics.per_pair(metric, self.clean_readouts),
            metrics.per_pair(metric, self.corrupted_readouts),
        )

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
            per_pair: a row per patch and pair (column ``pair``) instead of pair means, with
                ``pos_<NAME>`` columns giving each named position's token index in that pair.
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
        if per_pair:
            for name, where in self.metadata.get("named_positions", {}).items():
                columns[f"pos_{name}"] = np.asarray(where)[columns["pair"]]
        return pd.DataFrame(columns)

    def plot(
        self,
        metric: str = "logit_diff",
        normalized: bool = True,
        ax: Any = None,
        title: str = "",
        scale: str | float = "auto",
        dim: bool = False,
        pair: int | None = None,
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
            dim: pale the cells whose 95% interval over pairs (mean ± 1.96 standard errors, as
                in the widget) includes 0.
            pair: plot one pair's values (normalised by its own baselines) instead of the mean.
        """
        from .plotting import plot_result

        return plot_result(
            self, metric, normalized, ax=ax, title=title, scale=scale, dim=dim, pair=pair
        )

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
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in _SAVED_ARRAYS}
                header = json.loads(str(arrays.pop("header")))
                fields = header.get("readout_fields")
                if fields != list(READOUT_FIELDS):
                    raise ValueError(
                        f"{path} was saved by another patchwidget version (readout fields "
                        f"{fields}): re-run the sweep and save it again"
                    )
                return cls(
                    site=header["site"],
                    direction=header["direction"],
                    axes=tuple(header["axes"]),
                    coords={k: tuple(v) for k, v in header["coords"].items()},
                    labels={k: tuple(v) for k, v in header["labels"].items()},
                    metadata=header["metadata"],
                    complete=header["complete"],
                    **arrays,
                )
        except FileNotFoundError:
            raise
        except ValueError as error:
            if "another patchwidget version" in str(error):
                raise
            raise _unreadable(path, error) from None
        except (OSError, KeyError, TypeError, AttributeError, EOFError, BadZipFile) as error:
            raise _unreadable(path, error) from None

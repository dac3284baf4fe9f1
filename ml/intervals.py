"""90 % prediction intervals calibrated by poverty band and predicted level: Mondrian conformal regression with crepes.

Conformity scores are out-of-fold residuals on the model's sqrt scale, from the spatial cross-validation (fold
models that never saw the district's department), **one side at a time**: how far targets lay above their
prediction calibrates the upper side, how far below the lower side (``Calibrator``), so each side of the interval
leaves out its own share of districts (one symmetric quantile of |residual| left 6.7 % above and 2.9 % below on the
real files: the residuals are skewed upwards on the sqrt scale). Each side has its own level (ninth round,
``TrainConfig.side_levels``: the upper side at 0.90, the lower at 0.92, the total share left out of 0.91 moved towards
the lower side, the one that under-covers when a whole department is scored by a model that never saw it; the
``lower_confidence`` of ``MondrianIntervals``). They are calibrated separately
within bins of the *predicted* level (equal-frequency bins of the out-of-fold prediction, ``LEVEL_BINS``):
``crepes.ConformalRegressor`` with Mondrian categories (``bins=``) and ``crepes.extras.binning`` for the
bin edges. One pooled quantile (the previous MAPIE CV+ intervals) over-covers near-zero districts and
under-covers the 5-15 % ones; a quantile per predicted level gives each level its own width.

Mondrian cells (eighth round, ml/README.md): up to ``LEVEL_BINS`` level bins **within each of up to six
equal-frequency bands of the district's poverty** (``POVERTY_BANDS``, ``band_labels``). The model's errors depend on
where a district lies in poverty more than on its region: the least poor districts outside Lima (Ica, Madre de Dios,
Tumbes, Arequipa's and Tacna's towns) are where the model extrapolates from Lima's rich districts and misses by most.
Bands of a covariate known for every district use no department's residuals, so a withheld department gets the
same kind of interval. (Runs trained before used costa/sierra/selva regions as the cells: ``region_of``, still read.)

* ``MondrianIntervals.full``: calibrated on every out-of-fold residual; used around the final model's
  predictions (districts without a census share, what-if rows: ``brecha_ml.predict.predict_frame``).
* ``MondrianIntervals.folds[k]``: calibrated without fold ``k``'s residuals; used around fold ``k``'s
  out-of-fold predictions, so a district's own residual never calibrates its own interval (the published
  interval of a district with a known target is an honest out-of-sample interval).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from crepes import ConformalRegressor
from crepes.extras import binning

from brecha_ml.models import from_model_scale, to_model_scale

# Coarse natural region of each department (INEI department codes): "costa" = the departments with a Pacific
# coastline, "selva" = the Amazon lowland departments, "sierra" = the other (Andean) departments. Mondrian cells
# are predicted-level bins *within* each region: the coastal departments' out-of-fold residuals are larger at
# the same predicted level (their richer districts are above most of what the others teach), and one quantile
# per level shared with the Andes under-covered them (Ica, Tacna, Tumbes, Lambayeque, Arequipa, Lima below 85 %).
COSTA = ("02", "04", "07", "11", "13", "14", "15", "18", "20", "23", "24")
SELVA = ("01", "16", "17", "22", "25")


def region_of(departments) -> np.ndarray:
    """costa / sierra / selva for each department code; "" where the department is unknown (null)."""
    deps = pd.Series(np.asarray(departments, dtype=object))
    known = deps.map(lambda d: isinstance(d, str) and d != "").to_numpy(bool)
    out = np.where(deps.isin(COSTA), "costa", np.where(deps.isin(SELVA), "selva", "sierra")).astype(object)
    out[~known] = ""
    return out


BAND_FEATURE = "poverty_pct"  # the covariate whose equal-frequency bands are the outer Mondrian cells
POVERTY_BANDS = 6  # bands of BAND_FEATURE (fewer when there are fewer than MIN_PER_BIN rows per band)

LEVEL_BINS = 5  # equal-frequency bins of the predicted level (sqrt scale), each with its own conformal quantile
# fewer calibration residuals per bin than this: use fewer bins (a band's cells stay large enough: ~310 residuals per
# poverty band on the real files get 3 level bins; in the earlier regional cells, with 80, the
# selva's ~200-280 residuals get 2-3 level bins, costa and sierra 5). Chosen among interval variants by a nested
# criterion (leave-one-fold-out calibration inside each outer training fold, real files): the fewest departments
# below 85 % coverage at no more width; 40 gave 4.2 such departments per inner split, 80 gave 3.8 (ml/README.md)
MIN_PER_BIN = 80


def level_thresholds(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Edges of up to ``n_bins`` equal-frequency bins of ``values`` (``crepes.extras.binning``), each inner edge moved
    to the midpoint between the values on either side of it.

    ``binning``'s default adds a tie-breaking jitter drawn from numpy's *global* random state (``epsilon=1e-9``), and
    an equal-frequency edge often *is* one of the values: the bin of that value then depended on whatever had drawn
    from the global state before (a second training in the same process put ~3 % of the rows in another Mondrian
    cell, hence another width). No jitter here (``epsilon=0``), and an edge halfway between two values: the bin of
    every value is a function of the values alone, and a difference in the last digits of a prediction (another
    BLAS, another machine) cannot move it to another bin."""
    values = np.sort(np.asarray(values, float))
    _, edges = binning(values, bins=max(1, n_bins), epsilon=0)
    edges = np.asarray(edges, float)
    for i in range(1, len(edges) - 1):
        below = values[values <= edges[i]]
        above = values[values > edges[i]]
        if len(below) and len(above):
            edges[i] = (below[-1] + above[0]) / 2
    return edges


def assign_bins(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The bin (0, 1, ...) of each value for ``thresholds`` (``binning`` without its random jitter)."""
    return np.asarray(binning(np.asarray(values, float), bins=np.asarray(thresholds, float), epsilon=0))


def _numeric(values) -> np.ndarray:
    """``values`` as floats, NaN where a value is null or not a number."""
    return np.asarray(pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce"), float)


def band_labels(values, edges: np.ndarray) -> np.ndarray:
    """The band label ("b0", "b1", ...) of each value for the band ``edges`` (``level_thresholds``); "" where the value
    is null (such a row gets an interval calibrated by predicted level only)."""
    values = _numeric(values)
    out = np.full(len(values), "", dtype=object)
    known = np.isfinite(values)
    if known.any():
        out[known] = [f"b{int(b)}" for b in assign_bins(values[known], edges)]
    return out


@dataclass
class Calibrator:
    """Mondrian conformal regressors, one per side: bin thresholds on the model scale and two fitted crepes objects.
    With ``region_thresholds`` the Mondrian cells are level bins within each cell label (``regions``: a poverty band,
    ``band_labels``; a region, ``region_of``, in runs trained before the eighth round; the name is kept so saved
    calibrators load).

    Each side is its own split-conformal problem at level 1 − (1 − its side's level) / 2: ``conformal`` is fitted on
    how far each target lay *above* its prediction (max(y − ŷ, 0)), ``lower`` on how far *below* (max(ŷ − y, 0)),
    so each side leaves out its own share of districts (5 % at level 0.90) whatever the sign of the model's bias on
    the sqrt scale (one symmetric quantile of |y − ŷ| left 6.7 % above and 2.9 % below on the real files). Artifacts
    saved before this have no ``lower``: their intervals stay symmetric (``conformal`` then holds |y − ŷ|)."""

    thresholds: np.ndarray
    conformal: ConformalRegressor
    region_thresholds: dict[str, np.ndarray] | None = None
    lower: ConformalRegressor | None = None

    @classmethod
    def fit(cls, pred_scale: np.ndarray, y_scale: np.ndarray, n_bins: int = LEVEL_BINS,
            regions: np.ndarray | None = None) -> Calibrator:
        pred_scale, y_scale = np.asarray(pred_scale, float), np.asarray(y_scale, float)
        thresholds = level_thresholds(pred_scale, min(n_bins, len(pred_scale) // MIN_PER_BIN))
        per_region = None
        if regions is not None:
            regions = np.asarray(regions, dtype=object)
            per_region = {str(region): level_thresholds(pred_scale[regions == region],
                                                        min(n_bins, int((regions == region).sum()) // MIN_PER_BIN))
                          for region in sorted(set(regions))}
        cal = cls(thresholds, ConformalRegressor(), per_region, ConformalRegressor())
        bins = cal.bins(pred_scale, regions)
        above = y_scale - pred_scale
        cal.conformal.fit(np.maximum(above, 0), bins=bins)
        cal.lower.fit(np.maximum(-above, 0), bins=bins)
        return cal

    def bins(self, pred_scale: np.ndarray, regions: np.ndarray | None = None) -> np.ndarray:
        pred_scale = np.asarray(pred_scale, float)
        per_region = getattr(self, "region_thresholds", None)  # artifacts saved before regions have none
        if per_region is None:
            return assign_bins(pred_scale, self.thresholds)
        out = np.empty(len(pred_scale), dtype=object)
        for region, th in per_region.items():
            rows = np.asarray(regions, dtype=object) == region
            out[rows] = [f"{region}|{b}" for b in assign_bins(pred_scale[rows], th)]
        return out

    def half_widths(self, pred_scale: np.ndarray, confidence: float, regions: np.ndarray | None = None,
                    lower_confidence: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(below, above): how far the interval reaches below and above each prediction on the model scale (its
        Mondrian cell's conformal quantile of each side). The upper side leaves out (1 − ``confidence``) / 2 of the
        districts, the lower side (1 − ``lower_confidence``) / 2 (None: the same as the upper side)."""
        pred_scale = np.asarray(pred_scale, float)
        bins = self.bins(pred_scale, regions)
        lower = getattr(self, "lower", None)
        if lower is None:  # a symmetric calibrator of an earlier run
            q = self._quantile(self.conformal, pred_scale, bins, confidence)
            return q, q
        lower_side = 1 - (1 - (confidence if lower_confidence is None else lower_confidence)) / 2
        return (self._quantile(lower, pred_scale, bins, lower_side),
                self._quantile(self.conformal, pred_scale, bins, 1 - (1 - confidence) / 2))

    @staticmethod
    def _quantile(conformal: ConformalRegressor, pred_scale: np.ndarray, bins: np.ndarray,
                  confidence: float) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = conformal.predict_int(pred_scale, bins=bins, confidence=confidence)
        return np.asarray(iv[:, 1], float) - pred_scale

    def half_width(self, pred_scale: np.ndarray, confidence: float, regions: np.ndarray | None = None) -> np.ndarray:
        """The half-width below each prediction (model scale) with the lower side at ``confidence``: what a
        shortfall is measured against."""
        return self.half_widths(pred_scale, confidence, regions)[0]


@dataclass
class MondrianIntervals:
    """``full`` and ``folds`` use level bins within cells when fitted with cell labels: poverty bands (``band_edges``
    set; runs trained before the eighth round: regions); ``full_level`` (level bins only, every out-of-fold residual)
    serves rows whose cell is not known (no poverty value; no department for a regional run)."""

    confidence: float
    full: Calibrator
    folds: list[Calibrator] = field(default_factory=list)
    full_level: Calibrator | None = None
    band_edges: np.ndarray | None = None  # edges of the BAND_FEATURE bands (None: regions, or level bins only)
    # the lower side's level (``confidence`` is the upper side's); None: both sides at ``confidence`` (runs trained
    # before the ninth round)
    lower_confidence: float | None = None

    @classmethod
    def fit(cls, oof_scale: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
            confidence: float, n_bins: int = LEVEL_BINS, regions: np.ndarray | None = None,
            band_values: np.ndarray | None = None, n_bands: int = POVERTY_BANDS,
            lower_confidence: float | None = None) -> MondrianIntervals:
        """Calibrate on out-of-fold predictions (model scale) and targets (percent). The Mondrian cells are level bins
        within: ``band_values`` (each row's BAND_FEATURE) cut into up to ``n_bands`` equal-frequency bands; or else
        ``regions`` (``region_of`` the departments); or else level bins only. ``confidence`` is the upper side's level,
        ``lower_confidence`` the lower side's (None: the same)."""
        z = to_model_scale(y)
        edges = None
        cells = None if regions is None else np.asarray(regions, dtype=object)
        if band_values is not None and n_bands > 1:
            values = _numeric(band_values)
            known = values[np.isfinite(values)]
            edges = level_thresholds(known, min(n_bands, len(known) // MIN_PER_BIN))
            cells = band_labels(values, edges)
        per_fold = [Calibrator.fit(oof_scale[tr], z[tr], n_bins, None if cells is None else cells[tr]) for tr, _ in folds]
        level = Calibrator.fit(oof_scale, z, n_bins)
        full = level if cells is None else Calibrator.fit(oof_scale, z, n_bins, cells)
        return cls(confidence, full, per_fold, None if cells is None else level, edges, lower_confidence)

    def cells(self, n: int, regions: np.ndarray | None = None, band_values: np.ndarray | None = None) -> np.ndarray | None:
        """Each row's Mondrian cell label ("" = unknown: level bins only), or None for a level-only calibration."""
        if getattr(self, "full_level", None) is None:
            return None
        if getattr(self, "band_edges", None) is not None:  # poverty bands
            return np.full(n, "", dtype=object) if band_values is None else band_labels(band_values, self.band_edges)
        return np.full(n, "", dtype=object) if regions is None else np.asarray(regions, dtype=object)

    def interval(self, pred_scale: np.ndarray, fold: np.ndarray | None = None,
                 regions: np.ndarray | None = None, band_values: np.ndarray | None = None) -> pd.DataFrame:
        """Prediction and interval in percent (0..100) plus ``half_width_scale``, how far the interval reaches
        below the prediction on the model scale (the unit of a shortfall, ``brecha_ml.priority``).

        ``fold``: for each row, the index of the fold whose calibrator to use (-1 or None: the full one).
        ``band_values``: for each row, its BAND_FEATURE value (poverty %), which gives its cell; ``regions``: for each
        row, its region (``region_of``), used only by runs calibrated by region."""
        pred_scale = np.asarray(pred_scale, float)
        n = len(pred_scale)
        fold = np.full(n, -1) if fold is None else np.asarray(fold)
        cells = self.cells(n, regions, band_values)
        below, above = np.zeros(n), np.zeros(n)
        unknown = np.zeros(n, bool) if cells is None else (cells == "")
        lower_confidence = getattr(self, "lower_confidence", None)  # artifacts saved before the ninth round have none
        for k, cal in [(-1, self.full), *enumerate(self.folds)]:
            rows = np.flatnonzero(fold == k)
            if cells is not None:  # a cell without calibration rows in this calibrator (tiny data): level bins only
                known_cells = set(getattr(cal, "region_thresholds", None) or {})
                unknown[rows] |= ~np.isin(cells[rows], list(known_cells))
                rows = rows[~unknown[rows]]
            if len(rows):
                below[rows], above[rows] = cal.half_widths(pred_scale[rows], self.confidence,
                                                           None if cells is None else cells[rows], lower_confidence)
        rows = np.flatnonzero(unknown)
        if len(rows):
            below[rows], above[rows] = self.full_level.half_widths(pred_scale[rows], self.confidence,
                                                                   lower_confidence=lower_confidence)
        pred = from_model_scale(pred_scale)
        return pd.DataFrame({"predicted_internet_pct": pred,
                             "lower_90": np.minimum(from_model_scale(pred_scale - below), pred),
                             "upper_90": np.maximum(from_model_scale(pred_scale + above), pred),
                             "half_width_scale": below})


def oof_intervals(oof_scale: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                  confidence: float, n_bins: int = LEVEL_BINS, regions: np.ndarray | None = None,
                  band_values: np.ndarray | None = None,
                  n_bands: int = POVERTY_BANDS,
                  lower_confidence: float | None = None) -> tuple[MondrianIntervals, pd.DataFrame]:
    """Calibrators and the out-of-fold intervals of every known district (fold k's rows use folds[k])."""
    cal = MondrianIntervals.fit(oof_scale, y, folds, confidence, n_bins, regions, band_values, n_bands,
                                lower_confidence)
    fold_of = np.full(len(y), -1)
    for k, (_, te) in enumerate(folds):
        fold_of[te] = k
    return cal, cal.interval(oof_scale, fold_of, regions, band_values)


def coverage_tables(y: np.ndarray, iv: pd.DataFrame, departments: np.ndarray,
                    households: np.ndarray | None = None) -> pd.DataFrame:
    """Coverage of the out-of-fold intervals: pooled, per department and per predicted-level band (percent)."""
    hit = ((y >= iv["lower_90"].to_numpy() - 1e-9) & (y <= iv["upper_90"].to_numpy() + 1e-9)).astype(float)
    width = (iv["upper_90"] - iv["lower_90"]).to_numpy()
    pred = iv["predicted_internet_pct"].to_numpy()
    w = np.ones(len(y)) if households is None else np.nan_to_num(np.asarray(households, float))
    frame = pd.DataFrame({"hit": hit, "width": width, "w": w, "department_code": departments,
                          "level": pd.cut(pred, LEVEL_BANDS_PCT, labels=LEVEL_BAND_LABELS, include_lowest=True,
                                          right=False).astype(str)})
    rows = [_coverage_row("pooled", "all", frame)]
    rows += [_coverage_row("department", str(d), g) for d, g in frame.groupby("department_code", sort=True)]
    rows += [_coverage_row("predicted_level", str(b), frame[frame["level"] == b]) for b in LEVEL_BAND_LABELS
             if (frame["level"] == b).any()]
    return pd.DataFrame(rows)


LEVEL_BANDS_PCT = [0, 1, 5, 15, 30, 50, 100.0001]
LEVEL_BAND_LABELS = ["0-1 %", "1-5 %", "5-15 %", "15-30 %", "30-50 %", "50-100 %"]


def _coverage_row(scope: str, group: str, g: pd.DataFrame) -> dict:
    wsum = g["w"].sum()
    return {"scope": scope, "group_value": group, "n_districts": len(g), "coverage": float(g["hit"].mean()),
            "coverage_household_weighted": float((g["hit"] * g["w"]).sum() / wsum) if wsum > 0 else None,
            "mean_width_pp": float(g["width"].mean())}

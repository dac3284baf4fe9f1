"""Training settings. ``FULL`` is what ``brecha train`` uses; ``FAST`` only shortens training for tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class TrainConfig:
    n_splits: int = 5  # GroupKFold over departments: no department is ever on both sides
    confidence: float = 0.9  # prediction-interval level (the share of districts an interval should cover)
    # the conformal level each side is calibrated at: fold-excluded calibration under department shift left pooled
    # out-of-fold coverage ~1 pp short of its level (real files, nested leave-one-fold-out check: 89.0 % at 0.90,
    # 89.9 % at 0.91, 90.9 % at 0.92); 0.91 is the level whose inner coverage is nearest 90 % (ml/README.md)
    conformal_level: float = 0.91
    # ... split unevenly between the sides (same total share left out): the upper side at conformal_level − shift
    # (5 % above), the lower side at conformal_level + shift (4 % below). Under department shift the lower side is
    # the one that under-covers (nested check, symmetric 0.91: 4.3 % above, 4.9 % below; departments the model
    # over-predicts, such as Ica, miss below); upper 0.90 / lower 0.92 had fewer departments under 80 % per inner
    # split (0.20 vs 0.40) and under 85 % (1.84 vs 1.88), the target met in more splits (0.76 vs 0.56), at less
    # width (10.15 vs 10.52 pp); pooled and both sides in their bands in 24 of the 25 inner splits (25 before; the
    # other had 3.4 % below) (ml/README.md, ninth round)
    conformal_side_shift: float = 0.01
    interval_level_bins: int = 5  # Mondrian conformal: a separate quantile per bin of the predicted level
    # ... within each of this many equal-frequency bands of the district's poverty (brecha_ml.intervals.BAND_FEATURE); 0:
    # level bins only. Replaced costa/sierra/selva regions by the nested interval rule (leave-one-fold-out calibration
    # inside each outer training fold, 5 seeds, real files): departments under 85 % / 80 % per inner split 4.04 / 1.40
    # with regions, 1.88 / 0.40 with 6 bands at no more width; 3-6 bands are within noise of each other and 6 is the
    # one count whose pooled coverage and sides stayed in their bands in every inner split (ml/README.md, eighth round)
    interval_poverty_bands: int = 6
    underserved_threshold_pct: float = 5.0  # a district is "underserved" when internet_pct < this
    min_feature_coverage: float = 0.5  # a feature is used only when at least this share of districts has it
    # 200 trees at 0.1 matched 500 at 0.05 over 20 random withheld-department sets (R² 0.901, MAE 2.40 pp, in
    # an ensemble with the MLP) at less than half the fit and prediction time
    hgb_max_iter: int = 200
    hgb_learning_rate: float = 0.1
    hgb_max_depth: int = 4
    hgb_min_samples_leaf: int = 10
    mlp_hidden: tuple[int, ...] = (64, 32)
    mlp_max_epochs: int = 300
    # batch 128 at lr 6e-3, patience 15: the same withheld-department accuracy as batch 64 at 3e-3, patience 30
    # (the best epoch is ~10-20 either way) in less than half the time
    mlp_batch_size: int = 128
    mlp_lr: float = 6e-3
    mlp_patience: int = 15
    # networks per MLP, averaged (seeds seed, seed+1, ...): removes most of one network's seed sensitivity; 5 with
    # 2 monotone terms (below) passed the nested rule against 3 with 4 terms (ml/README.md, seventh round)
    mlp_bags: int = 5
    # early stopping on held-out departments chooses the number of epochs, then each network is retrained on
    # every row for that many epochs (real files, spatial CV: MLP MAE 2.29 pp without the retraining, 2.23 with)
    mlp_refit_all: bool = True
    # monotone effects (feature, +1: the prediction never falls when it rises / -1: never rises): enforced in
    # hist_gbm (monotonic_cst) and torch_mlp (MonotoneMLP), so a what-if cannot move a district the wrong way
    # (extreme poverty too: a what-if lowering poverty lowers extreme poverty where it would exceed it)
    monotone: tuple[tuple[str, int], ...] = (("electricity_pct", 1), ("poverty_pct", -1), ("extreme_poverty_pct", -1))
    # terms of the MLP's monotone part (brecha_ml.torch_model.MonotoneMLP); 4 beat 16 by 0.20 pp inner MAE (MLP) and
    # 0.07 pp (ensemble) under the nested rule (sixth round); 2 terms and 5 networks beat 4 terms and 3 networks by
    # 0.064 pp inner MAE and 0.013 inner R² (seed 42; seventh round, ml/README.md)
    mlp_monotone_units: int = 2
    # the ensemble is served only when its spatial-CV MAE beats its best member's by at least this (pp): over the 24
    # withheld-department sets it did not (ml/README.md, sixth round), so the simpler member is served
    ensemble_margin_pp: float = 0.10
    importance_repeats: int = 3
    segment_k: tuple[int, ...] = field(default=(3, 4, 5, 6, 7, 8))

    def side_levels(self) -> tuple[float, float]:
        """(upper, lower): the conformal level of each side of the interval (``brecha_ml.intervals``)."""
        # rounded: a float sum off in its last digit could move a conformal quantile's rank (a ceiling)
        return (round(self.conformal_level - self.conformal_side_shift, 6),
                round(self.conformal_level + self.conformal_side_shift, 6))

    def as_dict(self) -> dict:
        return asdict(self)


FULL = TrainConfig()
FAST = replace(FULL, hgb_max_iter=80, hgb_learning_rate=0.15, mlp_max_epochs=40, mlp_patience=8,
               importance_repeats=2, segment_k=(3, 4, 5), mlp_bags=1)

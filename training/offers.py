"""Next best offer: per-offer uplift from randomized exposures, LightGBM meta-learners.

Every exposure of a campaign was assigned at random to one of its channel's offers or to
control, with the propensity logged on the row, so the effect of offer *k* on a customer
is identified as P(buy | x, k) - P(buy | x, control). :class:`OfferModel` learns the offer
set from the training rows and estimates that effect for every offer with one of four
meta-learners (Künzel et al. 2019; Kennedy 2023):

* ``"s"`` (S-learner): one purchase model over all arms, the arm as a feature.
* ``"t"`` (T-learner): one purchase model per arm; uplift = difference of two models.
* ``"x"`` (X-learner): the T-learner's models impute each row's individual effect,
  a second model per offer smooths the imputed effects.
* ``"dr"`` (DR-learner, the default): a second model per offer regresses the
  doubly-robust pseudo-outcome ``mu_k - mu_0 + 1[A=k](Y - mu_k)/p_k - 1[A=0](Y - mu_0)/p_0``
  built with the *logged* propensities; unbiased whatever the first-stage models get
  wrong, and with them fitted out of fold (cross-fitting) no row's own outcome leaks
  into its pseudo-outcome. Its first stage is the S-learner and one effect model serves
  all offers (the offer as a feature) by default.

Control is pooled over channels for the control purchase model (the channel is one of its
inputs), while an offer's effect is learned only from rows of its own channel, where it
could have been assigned. Early stopping uses the later ``valid`` exposures.

:func:`evaluate` scores the model and its baselines on the same held-out exposures: Qini
and AUUC per offer (offer vs its channel's control), and the IPS value of the policy each
scorer implies (per row: the offer with the largest positive uplift among those of the
row's channel, or none), in purchases per exposure.

The model's own policy is that argmax by default. ``policy="tree"`` instead learns a
shallow policy tree per channel on cross-fitted doubly-robust scores (Athey & Wager 2021),
its depth chosen by cross-validated DR value on the fitting rows; depth 0 is the best
single offer, so the tree departs from it only where that pays out of sample. On
Hillstrom (visits) the cross-validation keeps depth 0, "Mens e-mail to everyone": the
e-mails' effects differ too little between customers for a split to pay there.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from kizuna.features.contracts import NO_OFFER
from kizuna.training.base import MODEL_ROW, lgb_matrix, lgb_threads, model_inputs
from kizuna.training.evaluate import PolicyValue, auuc, ips_policy_value, qini_coefficient

logger = logging.getLogger(__name__)

# The action of a policy that sends nothing; logged control rows carry it too.
LEARNERS = ("t", "s", "x", "dr")
POLICIES = ("argmax", "tree")
# Below this many evaluation rows a model stops early on the latest training rows instead.
MIN_EVAL_ROWS = 200
# The first columns of an evaluation table; per-offer Qini and AUUC follow.
SUMMARY_COLUMNS = (
    "policy_value",
    "policy_value_se",
    "incremental_value",
    "incremental_value_se",
    "qini",
    "auuc",
    "offer_share",
)


class OfferDataError(ValueError):
    """The exposures cannot train an uplift model; the message says what to change."""


def logged_actions(frame: pd.DataFrame, arm_column: str = "offer_id") -> np.ndarray:
    """The logged arm of each row, control (null offer) as :data:`NO_OFFER`."""
    arms = frame[arm_column]
    return np.where(arms.isna(), NO_OFFER, arms.astype(str)).astype(object)


def policy_difference(outcome, logged_action, chosen_a, chosen_b, propensity) -> PolicyValue:
    """IPS estimate of value(policy a) - value(policy b) on the same rows.

    The standard error is that of the mean of the per-row differences of the IPS terms,
    so the correlation between the two policies (they often agree) is accounted for.
    ``matched`` counts rows where the two policies choose differently.
    """
    outcome = np.asarray(outcome, dtype=float)
    propensity = np.asarray(propensity, dtype=float)
    logged = np.asarray(logged_action, dtype=object)
    a = np.asarray(chosen_a, dtype=object)
    b = np.asarray(chosen_b, dtype=object)
    terms = outcome * ((logged == a).astype(float) - (logged == b).astype(float)) / propensity
    se = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("nan")
    return PolicyValue(float(terms.mean()), se, int((a != b).sum()))


class _Rows:
    """The rows of one ``predict`` call as LightGBM matrices, converted once.

    The first-stage model over all arms and the pooled effect model read the features
    plus one category column (the arm, the offer); predicting a variant only sets that
    column of the matrix instead of copying and converting the frame again.
    """

    def __init__(self, x: pd.DataFrame, threads: int) -> None:
        self.x, self.threads = x, threads
        self._matrices: dict[str, np.ndarray] = {}

    def _matrix(self, categories: list[list], spare: int) -> np.ndarray:
        key = repr((categories, spare))
        if key not in self._matrices:
            self._matrices[key] = lgb_matrix(self.x, categories, spare)
        return self._matrices[key]

    def predict(self, model: lgb.LGBMModel, level: str | None = None) -> np.ndarray:
        """P(buy) of a classifier or the prediction of a regressor. ``level``: the value
        of the model's last column (its arm or offer); None for a model without one."""
        booster = model.booster_
        categories = booster.pandas_categorical or []
        if level is None:
            x = self._matrix(categories, spare=0)
        else:
            # The features' matrix with a spare last column, set to this level's code.
            x = self._matrix(categories[:-1], spare=1)
            levels = categories[-1]
            x[:, -1] = levels.index(level) if level in levels else np.nan
        # The booster itself: the scikit-learn wrapper would check a matrix's (missing)
        # feature names against the frame it was fitted on.
        return booster.predict(
            x, num_iteration=model.best_iteration_ or None, num_threads=self.threads
        )


class OfferModel:
    """Per-offer purchase probability and uplift over control, for several offers.

    Args:
        learner: ``"dr"`` (default), ``"x"``, ``"t"`` or ``"s"`` (one purchase model with
            the arm as a feature); see the module docstring.
        first_stage: the purchase models of the X and DR learners, ``"s"`` or ``"t"``.
        pool_effects: DR only: one effect model over all offers (the offer as a feature),
            sharing who-responds-to-offers across offers, instead of one per offer.
        arm_column: the logged offer; null means control.
        outcome_column: the binary response (bought within the window).
        propensity_column: the probability of the logged arm.
        channel_column: the channel an offer is tied to, or None when every offer was
            available on every row (a single campaign, e.g. Hillstrom's).
        n_estimators: most boosting rounds; early stopping usually ends far sooner.
        learning_rate, num_leaves, min_child_samples, reg_lambda, colsample_bytree:
            LightGBM's own, for every model; kept small and strong because uplift is a
            small difference of noisy rates.
        effect_min_child_samples: ``min_child_samples`` of the second-stage effect models
            (X and DR); larger, since a pseudo-outcome is much noisier than a purchase.
        folds: cross-fitting folds of the first stage (X and DR learners).
        policy: how :meth:`choose` turns the model into actions. ``"argmax"`` (default):
            the offer with the largest positive predicted uplift. ``"tree"``: a shallow
            policy tree over the features (Athey & Wager 2021), grown per channel to
            maximise the sum of out-of-sample doubly-robust scores
            ``mu_a + 1[A=a](Y - mu_a)/p`` of its actions; depth 0 is the best single
            action, so the tree deviates from it only where the scores pay for a split.
        policy_depths: the tree depths compared by ``policy_folds``-fold cross-validated
            DR value on the fitting rows (train and valid); the best is kept.
        policy_min_leaf_share: smallest leaf of the policy tree, as a share of its rows.
        policy_thresholds: candidate thresholds per numeric feature (quantiles).
        early_stopping_rounds: rounds without improvement on the validation rows.
        seed: for LightGBM and the fold assignment.
        n_jobs: LightGBM threads.

    Attributes (after ``fit``):
        offers_: the offers seen in training, sorted.
        offer_channels_: each offer's channel (None without ``channel_column``).
        features_: the feature columns.
        outcome_models_: first-stage purchase models (``all_arms`` or one per arm).
        effect_models_: second-stage effect models per offer (X: a pair per offer).
        train_uplift_: each offer's mean purchase rate minus its channel's control rate
            on the training rows, the basis of the best-single-offer baseline.
        policy_trees_: ``policy="tree"``: per channel (None without ``channel_column``)
            a :class:`PolicyTree`.
        policy_cv_: per channel, each depth's cross-validated DR value per exposure and
            its standard error.
    """

    name: ClassVar[str] = "offers"
    service: ClassVar[str] = "offers_v1"
    primary_metric: ClassVar[str] = "policy_value"
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        learner: str = "dr",
        first_stage: str = "s",
        arm_column: str = "offer_id",
        outcome_column: str = "purchased",
        propensity_column: str = "propensity",
        channel_column: str | None = "channel",
        n_estimators: int = 1000,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        reg_lambda: float = 5.0,
        colsample_bytree: float = 0.8,
        effect_min_child_samples: int = 300,
        pool_effects: bool = True,
        folds: int = 3,
        policy: str = "argmax",
        policy_depths: tuple[int, ...] = (0, 1, 2),
        policy_min_leaf_share: float = 0.05,
        policy_thresholds: int = 16,
        policy_folds: int = 5,
        early_stopping_rounds: int = 50,
        seed: int = 7,
        n_jobs: int = 1,
    ) -> None:
        self.learner = learner
        self.first_stage = first_stage
        self.arm_column = arm_column
        self.outcome_column = outcome_column
        self.propensity_column = propensity_column
        self.channel_column = channel_column
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.colsample_bytree = colsample_bytree
        self.effect_min_child_samples = effect_min_child_samples
        self.pool_effects = pool_effects
        self.folds = folds
        self.policy = policy
        self.policy_depths = policy_depths
        self.policy_min_leaf_share = policy_min_leaf_share
        self.policy_thresholds = policy_thresholds
        self.policy_folds = policy_folds
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> OfferModel:
        """Learn the offers and their uplift from ``train``; stop early on ``valid``.

        Raises:
            OfferDataError: when the training rows have no control group or no offer.
        """
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {LEARNERS}, not {self.learner!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        self._check(train)
        self.features_ = list(features)
        arms = logged_actions(train, self.arm_column)
        self.offers_ = sorted(set(arms) - {NO_OFFER})
        self.offer_channels_ = self._offer_channels(train, arms)
        self.train_uplift_ = self._train_uplift(train, arms)

        x_train, x_valid = self._inputs(train), self._inputs(valid)
        y_train = train[self.outcome_column].to_numpy(dtype=float)
        y_valid = valid[self.outcome_column].to_numpy(dtype=float)
        valid_arms = logged_actions(valid, self.arm_column)

        # First stage on all training rows: the purchase models the outputs come from.
        self.effect_models_ = {}
        self.outcome_models_ = self._fit_outcome_models(
            x_train, y_train, arms, x_valid, y_valid, valid_arms
        )
        self.policy_trees_, self.policy_cv_ = {}, {}
        if self.learner in ("s", "t") and self.policy == "argmax":
            return self

        mu_train = self._cross_fitted_outcomes(x_train, y_train, arms, x_valid, y_valid, valid_arms)
        mu_valid = self._outcomes(x_valid)
        p_train = train[self.propensity_column].to_numpy(dtype=float)
        p_valid = valid[self.propensity_column].to_numpy(dtype=float)
        if self.learner == "dr":
            self._fit_dr_effects(
                (train, x_train, y_train, arms, p_train, mu_train),
                (valid, x_valid, y_valid, valid_arms, p_valid, mu_valid),
            )
        elif self.learner == "x":
            for offer in self.offers_:
                self.effect_models_[offer] = self._fit_x_pair(
                    offer, x_train, y_train, arms, mu_train, self._on_channel(train, offer),
                    x_valid, y_valid, valid_arms, mu_valid, self._on_channel(valid, offer),
                )  # fmt: skip
        if self.policy == "tree":
            # Out-of-sample DR scores of every row of the 70%: cross-fitted on the training
            # rows, from the full first stage on the validation rows (it never saw them).
            both = pd.concat([train, valid], ignore_index=True)
            mu_both = {a: np.concatenate([mu_train[a], mu_valid[a]]) for a in mu_train}
            self._fit_policy_trees(
                both,
                np.concatenate([y_train, y_valid]),
                np.concatenate([arms, valid_arms]),
                np.concatenate([p_train, p_valid]),
                mu_both,
            )
        return self

    def _fit_dr_effects(self, train_part: tuple, valid_part: tuple) -> None:
        pieces = {"train": [], "valid": []}
        for offer in self.offers_:
            for part, (frame, x, y, a, p, mu) in (("train", train_part), ("valid", valid_part)):
                on = self._on_channel(frame, offer)
                target = self._dr_pseudo_outcome(offer, y, a, p, mu)
                pieces[part].append((self._with_offer(x[on], offer), target[on]))
        if self.pool_effects:
            self.effect_models_["all_offers"] = self._fit_effect(
                pd.concat([x for x, _ in pieces["train"]], ignore_index=True),
                np.concatenate([t for _, t in pieces["train"]]),
                pd.concat([x for x, _ in pieces["valid"]], ignore_index=True),
                np.concatenate([t for _, t in pieces["valid"]]),
            )
        else:
            for k, offer in enumerate(self.offers_):
                self.effect_models_[offer] = self._fit_effect(
                    *pieces["train"][k], *pieces["valid"][k]
                )

    def _fit_policy_trees(self, frame, y, arms, propensity, mu) -> None:
        """One policy tree per channel on the DR scores; depth chosen by cross-validation."""
        x = model_inputs(frame, self.features_).reset_index(drop=True)
        groups = sorted(set(self.offer_channels_.values()), key=str)
        for group in groups:
            rows = (
                np.ones(len(frame), dtype=bool)
                if group is None
                else (frame[self.channel_column].astype(str) == group).to_numpy()
            )
            actions = [NO_OFFER, *(o for o in self.offers_ if self.offer_channels_[o] == group)]
            scores = np.column_stack(
                [
                    mu[a][rows] + (arms[rows] == a) * (y[rows] - mu[a][rows]) / propensity[rows]
                    for a in actions
                ]
            )
            splits = candidate_splits(x[rows], self.policy_thresholds)
            indicators = split_indicators(x[rows].reset_index(drop=True), splits)
            cv = self._cross_validate_depths(scores, indicators)
            self.policy_cv_[group] = cv
            depth = max(cv, key=lambda d: (cv[d][0], -d))
            min_leaf = self.policy_min_leaf_share * len(scores)
            _, node = grow_policy_tree(scores, indicators, depth, min_leaf)
            self.policy_trees_[group] = PolicyTree(splits, node, actions, depth)
            logger.info("policy tree for %s: depth %d, %s", group, depth, cv)

    def _cross_validate_depths(self, scores, indicators) -> dict[int, tuple[float, float]]:
        held_value = {d: np.zeros(len(scores)) for d in self.policy_depths}
        folds = KFold(self.policy_folds, shuffle=True, random_state=self.seed)
        for fit_rows, held_rows in folds.split(scores):
            min_leaf = self.policy_min_leaf_share * len(fit_rows)
            for depth in self.policy_depths:
                _, node = grow_policy_tree(scores[fit_rows], indicators[fit_rows], depth, min_leaf)
                chosen = apply_policy_tree(node, indicators[held_rows])
                held_value[depth][held_rows] = scores[held_rows, chosen]
        n = len(scores)
        return {
            d: (float(v.mean()), float(v.std(ddof=1) / np.sqrt(n))) for d, v in held_value.items()
        }

    def _with_offer(self, x: pd.DataFrame, offer: str) -> pd.DataFrame:
        out = x.reset_index(drop=True)
        out["__offer"] = pd.Categorical([offer] * len(out), self.offers_)
        return out

    def _check(self, train: pd.DataFrame) -> None:
        needed = [self.arm_column, self.outcome_column, self.propensity_column]
        if self.channel_column:
            needed.append(self.channel_column)
        missing = [c for c in needed if c not in train.columns]
        if missing:
            raise OfferDataError(
                f"the exposure frame lacks {', '.join(missing)}; build it with "
                "kizuna.training.dataset.exposure_training_frame or pass the column names"
            )
        arms = logged_actions(train, self.arm_column)
        if not (arms == NO_OFFER).any():
            raise OfferDataError(
                "the training exposures have no control group (no row without an offer), so "
                "the uplift of an offer cannot be estimated: hold out a random share of every "
                "campaign as control (offer_id empty) and log each arm's propensity"
            )
        if (arms == NO_OFFER).all():
            raise OfferDataError("the training exposures are all control: no offer to learn")
        propensity = train[self.propensity_column].to_numpy(dtype=float)
        if not ((propensity > 0) & (propensity <= 1)).all():
            raise OfferDataError(
                f"{self.propensity_column} must be the logged arm's probability, in (0, 1]"
            )

    def _offer_channels(self, train: pd.DataFrame, arms: np.ndarray) -> dict[str, str | None]:
        if not self.channel_column:
            return dict.fromkeys(self.offers_)
        channels = train[self.channel_column].astype(str).to_numpy()
        out: dict[str, str | None] = {}
        for offer in self.offers_:
            seen = pd.Series(channels[arms == offer]).value_counts()
            out[offer] = str(seen.index[0])
            if len(seen) > 1:
                logger.warning("offer %s was sent on several channels %s", offer, list(seen.index))
            if not ((arms == NO_OFFER) & (channels == out[offer])).any():
                logger.warning(
                    "no control exposures on channel %s: the uplift of %s leans on other "
                    "channels' control rows",
                    out[offer],
                    offer,
                )
        return out

    def _train_uplift(self, train: pd.DataFrame, arms: np.ndarray) -> dict[str, float]:
        y = train[self.outcome_column].to_numpy(dtype=float)
        out = {}
        for offer in self.offers_:
            control = (arms == NO_OFFER) & self._on_channel(train, offer)
            if not control.any():
                control = arms == NO_OFFER
            out[offer] = float(y[arms == offer].mean() - y[control].mean())
        return out

    def _on_channel(self, frame: pd.DataFrame, offer: str) -> np.ndarray:
        """Rows where ``offer`` could have been assigned."""
        if not self.channel_column:
            return np.ones(len(frame), dtype=bool)
        return (frame[self.channel_column].astype(str) == self.offer_channels_[offer]).to_numpy()

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = model_inputs(frame, self.features_).reset_index(drop=True)
        if self.channel_column:
            x["__channel"] = pd.Categorical(
                frame[self.channel_column].astype(str).to_numpy(),
                categories=sorted({c for c in self.offer_channels_.values() if c}),
            )
        return x

    def _lgb_params(self, min_child_samples: int) -> dict:
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": min_child_samples,
            "reg_lambda": self.reg_lambda,
            "colsample_bytree": self.colsample_bytree,
            "subsample": 0.8,
            "subsample_freq": 1,
            "random_state": self.seed,
            "n_jobs": self.n_jobs,
            # LightGBM otherwise picks col- or row-wise histograms by timing both, so a
            # busy machine can train another model from the same rows; fixed, it cannot.
            "force_col_wise": True,
            "verbose": -1,
        }

    def _boost(self, model, x: pd.DataFrame, y: np.ndarray, x_eval, y_eval):
        """Fit with early stopping on the evaluation rows, or on the latest fifth of the
        training rows when the evaluation rows are too few (e.g. another channel's send)."""
        if len(y_eval) < MIN_EVAL_ROWS:
            cut = int(len(y) * 0.8)
            x, x_eval, y, y_eval = x.iloc[:cut], x.iloc[cut:], y[:cut], y[cut:]
        model.fit(
            x,
            y,
            eval_X=x_eval,
            eval_y=y_eval,
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        return model

    def _fit_classifier(self, x, y, x_eval, y_eval) -> lgb.LGBMClassifier:
        model = lgb.LGBMClassifier(**self._lgb_params(self.min_child_samples))
        return self._boost(model, x, y.astype(int), x_eval, y_eval.astype(int))

    def _fit_effect(self, x, target, x_eval, target_eval) -> lgb.LGBMRegressor:
        model = lgb.LGBMRegressor(**self._lgb_params(self.effect_min_child_samples))
        return self._boost(model, x, target, x_eval, target_eval)

    @property
    def _first_stage(self) -> str:
        return self.learner if self.learner in ("s", "t") else self.first_stage

    def _fit_outcome_models(self, x, y, arms, x_eval, y_eval, eval_arms) -> dict:
        """Purchase models: one over all arms with the arm as a feature (``"s"``), or one
        per arm (``"t"``)."""
        if self._first_stage == "s":
            single = self._fit_classifier(
                self._with_arm(x, arms), y, self._with_arm(x_eval, eval_arms), y_eval
            )
            return {"all_arms": single}
        return {
            arm: self._fit_classifier(
                x[arms == arm], y[arms == arm], x_eval[eval_arms == arm], y_eval[eval_arms == arm]
            )
            for arm in [NO_OFFER, *self.offers_]
        }

    def _cross_fitted_outcomes(self, x, y, arms, x_eval, y_eval, eval_arms) -> dict:
        """Out-of-fold first-stage predictions for every training row and every arm."""
        out = {arm: np.zeros(len(y)) for arm in [NO_OFFER, *self.offers_]}
        folds = KFold(self.folds, shuffle=True, random_state=self.seed)
        for fit_rows, held_rows in folds.split(x):
            models = self._fit_outcome_models(
                x.iloc[fit_rows], y[fit_rows], arms[fit_rows], x_eval, y_eval, eval_arms
            )
            for arm, p_buy in self._outcomes(x.iloc[held_rows], models).items():
                out[arm][held_rows] = p_buy
        return out

    def _with_arm(self, x: pd.DataFrame, arms) -> pd.DataFrame:
        out = x.copy()
        out["__arm"] = pd.Categorical(np.asarray(arms, dtype=object), [NO_OFFER, *self.offers_])
        return out

    def _outcomes(self, x: pd.DataFrame, models: dict | None = None) -> dict:
        """P(buy) of every row under every arm (the fitting's frames)."""
        models = self.outcome_models_ if models is None else models
        if "all_arms" in models:
            return {
                arm: models["all_arms"].predict_proba(self._with_arm(x, [arm] * len(x)))[:, 1]
                for arm in [NO_OFFER, *self.offers_]
            }
        return {arm: model.predict_proba(x)[:, 1] for arm, model in models.items()}

    @staticmethod
    def _dr_pseudo_outcome(offer, y, arms, propensity, mu) -> np.ndarray:
        treated = (arms == offer).astype(float)
        control = (arms == NO_OFFER).astype(float)
        return (
            mu[offer]
            - mu[NO_OFFER]
            + treated * (y - mu[offer]) / propensity
            - control * (y - mu[NO_OFFER]) / propensity
        )

    def _fit_x_pair(self, offer, x, y, arms, mu, on, x_eval, y_eval, eval_arms, mu_eval, on_eval):
        """The X-learner's two effect models: on treated rows (Y - mu_0) and on control
        rows of the offer's channel (mu_k - Y)."""
        treated, eval_treated = arms == offer, eval_arms == offer
        control, eval_control = on & (arms == NO_OFFER), on_eval & (eval_arms == NO_OFFER)
        from_treated = self._fit_effect(
            x[treated], (y - mu[NO_OFFER])[treated],
            x_eval[eval_treated], (y_eval - mu_eval[NO_OFFER])[eval_treated],
        )  # fmt: skip
        from_control = self._fit_effect(
            x[control], (mu[offer] - y)[control],
            x_eval[eval_control], (mu_eval[offer] - y_eval)[eval_control],
        )  # fmt: skip
        # Weight of the control-side model = the share of treated rows (Künzel's g(x)),
        # constant under randomization.
        weight = float(treated.sum() / max(treated.sum() + control.sum(), 1))
        return from_treated, from_control, weight

    # -- prediction ------------------------------------------------------------------------

    @property
    def input_columns(self) -> list[str]:
        """The columns :meth:`predict` reads: the features and the row's channel."""
        return [*self.features_, *([self.channel_column] if self.channel_column else [])]

    def predict(self, frame: pd.DataFrame, offers: list[str] | None = None) -> pd.DataFrame:
        """``p_buy_control``, and ``p_buy_<offer>`` and ``uplift_<offer>`` for each offer.

        ``offers`` (default: every offer, whatever the row's channel; the serving layer
        filters by channel and eligibility) limits the work to the offers asked for, e.g.
        those of the rows' channel. ``uplift_<offer>`` = ``p_buy_<offer>`` -
        ``p_buy_control``; probabilities are in [0, 1].
        """
        offers = list(self.offers_ if offers is None else offers)
        unknown = sorted(set(offers) - set(self.offers_))
        if unknown:
            raise ValueError(
                f"offers {unknown} were not in training; the model knows {self.offers_}"
            )
        rows = _Rows(self._inputs(frame), lgb_threads(self.n_jobs))
        # The X and DR learners' effect models give an offer's uplift directly, so only
        # the control arm's purchase model is needed; T and S difference two arms.
        needed = [NO_OFFER] if self.learner in ("x", "dr") else [NO_OFFER, *offers]
        if "all_arms" in self.outcome_models_:
            mu = {a: rows.predict(self.outcome_models_["all_arms"], a) for a in needed}
        else:
            mu = {a: rows.predict(self.outcome_models_[a]) for a in needed}
        out = {"p_buy_control": mu[NO_OFFER]}
        for offer in offers:
            if self.learner in ("t", "s"):
                effect = mu[offer] - mu[NO_OFFER]
            elif self.learner == "dr":
                # Pooled or per offer, an effect model reads the offer as its last column.
                model = self.effect_models_.get("all_offers", self.effect_models_.get(offer))
                effect = rows.predict(model, offer)
            else:
                from_treated, from_control, weight = self.effect_models_[offer]
                effect = weight * rows.predict(from_control)
                effect += (1 - weight) * rows.predict(from_treated)
            out[f"p_buy_{offer}"] = np.clip(mu[NO_OFFER] + effect, 0.0, 1.0)
        for offer in offers:
            out[f"uplift_{offer}"] = out[f"p_buy_{offer}"] - out["p_buy_control"]
        return pd.DataFrame(out, index=frame.index)

    def available(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows x offers: whether each offer could be sent on each row's channel."""
        if not self.channel_column:
            return np.ones((len(frame), len(self.offers_)), dtype=bool)
        channels = frame[self.channel_column].astype(str).to_numpy()
        return np.column_stack([channels == self.offer_channels_[o] for o in self.offers_])

    def choose(self, frame: pd.DataFrame, uplift: np.ndarray | None = None) -> np.ndarray:
        """The model's policy, one action per row (an offer or :data:`NO_OFFER`).

        ``policy="argmax"``: the available offer with the largest positive uplift, else
        no offer; ``uplift`` (rows x offers) defaults to the model's. ``policy="tree"``:
        the action of the row's channel's policy tree (``uplift`` is not used).
        """
        if self.policy == "tree":
            return self._tree_actions(frame)
        if uplift is None:
            predictions = self.predict(frame)
            uplift = predictions[[f"uplift_{o}" for o in self.offers_]].to_numpy()
        masked = np.where(self.available(frame), uplift, -np.inf)
        best = masked.argmax(axis=1)
        chosen = np.array(self.offers_, dtype=object)[best]
        return np.where(masked.max(axis=1) > 0, chosen, NO_OFFER).astype(object)

    def _tree_actions(self, frame: pd.DataFrame) -> np.ndarray:
        x = model_inputs(frame, self.features_).reset_index(drop=True)
        out = np.full(len(frame), NO_OFFER, dtype=object)
        for group, tree in self.policy_trees_.items():
            rows = (
                np.ones(len(frame), dtype=bool)
                if group is None
                else (frame[self.channel_column].astype(str) == group).to_numpy()
            )
            out[rows] = tree.choose(x[rows].reset_index(drop=True))
        return out


class PolicyTree:
    """A fitted policy tree: candidate splits, the tree over their indices, its actions.

    A node is ``{"action": k}`` (index into ``actions``) or ``{"split": j, "left": ...,
    "right": ...}``; rows where split ``j`` holds go left.
    """

    def __init__(self, splits: list[tuple], node: dict, actions: list[str], depth: int) -> None:
        self.splits = splits
        self.node = node
        self.actions = actions
        self.depth = depth

    def choose(self, x: pd.DataFrame) -> np.ndarray:
        """The action of every row of the model inputs ``x``."""
        chosen = apply_policy_tree(self.node, split_indicators(x, self.splits))
        return np.array(self.actions, dtype=object)[chosen]

    def describe(self, node: dict | None = None, indent: str = "") -> str:
        """The tree as indented text, e.g. ``womens <= 0 -> mens_email``."""
        node = self.node if node is None else node
        if "action" in node:
            return f"{indent}-> {self.actions[node['action']]}"
        name, op, value = self.splits[node["split"]]
        return "\n".join(
            [
                f"{indent}if {name} {op} {value}:",
                self.describe(node["left"], indent + "  "),
                f"{indent}else:",
                self.describe(node["right"], indent + "  "),
            ]
        )


def candidate_splits(x: pd.DataFrame, thresholds: int) -> list[tuple[str, str, object]]:
    """Policy-tree splits: ``(feature, "<=", t)`` at quantiles of numeric features,
    ``(feature, "==", category)`` for each category of a categorical one."""
    splits: list[tuple[str, str, object]] = []
    for name in x.columns:
        column = x[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            present = sorted(column.dropna().unique(), key=str)
            if len(present) > 1:
                splits += [(name, "==", c) for c in present]
            continue
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        if len(values) == 0:
            continue
        cuts = np.unique(np.quantile(values, np.linspace(0, 1, thresholds + 1)[1:-1]))
        splits += [(name, "<=", float(t)) for t in cuts[cuts < values.max()]]
    return splits


def split_indicators(x: pd.DataFrame, splits: list[tuple[str, str, object]]) -> np.ndarray:
    """Rows x splits: whether each split holds (a missing value never does)."""
    columns = [
        (x[name].astype(object) == value).to_numpy(dtype=bool)
        if op == "=="
        else pd.to_numeric(x[name], errors="coerce").to_numpy(dtype=float) <= value
        for name, op, value in splits
    ]
    return np.column_stack(columns) if columns else np.zeros((len(x), 0), dtype=bool)


def grow_policy_tree(
    scores: np.ndarray, indicators: np.ndarray, depth: int, min_leaf: float
) -> tuple[float, dict]:
    """The tree of at most ``depth`` splits with the largest sum of ``scores`` (rows x
    actions) of its actions, by exhaustive search; leaves keep ``min_leaf`` rows."""
    return _grow(scores, indicators.astype(float), np.ones(len(scores), bool), depth, min_leaf)


def _grow(scores, splits, rows, depth, min_leaf) -> tuple[float, dict]:
    total = scores[rows].sum(axis=0)
    best = (float(total.max()), {"action": int(total.argmax())})
    if depth == 0 or not splits.shape[1]:
        return best
    weight = rows.astype(float)
    n_left = splits.T @ weight
    allowed = (n_left >= min_leaf) & (rows.sum() - n_left >= min_leaf)
    if depth == 1:
        left = splits.T @ (scores * weight[:, None])
        right = total - left
        value = np.where(allowed, left.max(axis=1) + right.max(axis=1), -np.inf)
        j = int(value.argmax())
        if value[j] > best[0] + 1e-9:
            best = (
                float(value[j]),
                {
                    "split": j,
                    "left": {"action": int(left[j].argmax())},
                    "right": {"action": int(right[j].argmax())},
                },
            )
        return best
    for j in np.flatnonzero(allowed):
        goes_left = splits[:, j] > 0
        left_value, left = _grow(scores, splits, rows & goes_left, depth - 1, min_leaf)
        right_value, right = _grow(scores, splits, rows & ~goes_left, depth - 1, min_leaf)
        if left_value + right_value > best[0] + 1e-9:
            best = (left_value + right_value, {"split": int(j), "left": left, "right": right})
    return best


def apply_policy_tree(node: dict, indicators: np.ndarray) -> np.ndarray:
    """The action index of every row of ``indicators`` (rows x splits)."""
    if "action" in node:
        return np.full(len(indicators), node["action"], dtype=int)
    goes_left = indicators[:, node["split"]]
    out = np.empty(len(indicators), dtype=int)
    out[goes_left] = apply_policy_tree(node["left"], indicators[goes_left])
    out[~goes_left] = apply_policy_tree(node["right"], indicators[~goes_left])
    return out


def evaluate(
    model: OfferModel,
    test: pd.DataFrame,
    churn_risk: np.ndarray | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The model and its baselines on held-out exposures, one row per scorer.

    Scorers: ``kizuna`` (the model's policy, :meth:`OfferModel.choose`), ``random`` (a
    uniform choice among the row's available offers and no offer; random uplift scores),
    ``best_single_offer`` (on each channel, the offer with the best mean uplift on the
    *training* rows, to everyone, or nothing if none was positive; a constant score, so no
    Qini) and, when ``churn_risk`` is given, ``high_churn_risk`` (that offer to the top
    third by churn risk, nothing to the others; churn risk as the uplift score).

    Columns:
        qini_<offer>, auuc_<offer>: Qini coefficient and AUUC of the scorer's uplift for
            ``offer`` against control, on the test rows of the offer's channel that got
            the offer or control.
        qini, auuc: their means over offers weighted by each offer's treated test rows.
        policy_value, policy_value_se: IPS estimate (logged propensities) of the purchase
            rate per exposure had the scorer chosen the arm of every row.
        incremental_value, incremental_value_se: the same minus the value of sending
            nothing (paired): incremental purchases per exposure.
        offer_share: share of rows the policy sends an offer to.
    """
    logged = logged_actions(test, model.arm_column)
    y = test[model.outcome_column].to_numpy(dtype=float)
    propensity = test[model.propensity_column].to_numpy(dtype=float)
    available = model.available(test)
    offers = model.offers_
    rng = np.random.default_rng(seed)

    best_by_row = _best_single_offer(model, available)
    scores = {MODEL_ROW: model.predict(test)[[f"uplift_{o}" for o in offers]].to_numpy()}
    policies = {MODEL_ROW: model.choose(test, scores[MODEL_ROW])}  # the tree ignores scores
    random_scores = rng.random((len(test), len(offers)))
    scores["random"] = random_scores
    policies["random"] = _random_policy(offers, available, rng)
    scores["best_single_offer"] = None
    policies["best_single_offer"] = best_by_row
    if churn_risk is not None:
        risk = np.asarray(churn_risk, dtype=float)
        top_third = risk >= np.quantile(risk, 2 / 3)
        scores["high_churn_risk"] = np.repeat(risk[:, None], len(offers), axis=1)
        policies["high_churn_risk"] = np.where(top_third, best_by_row, NO_OFFER).astype(object)

    nothing = np.full(len(test), NO_OFFER, dtype=object)
    rows = {}
    for scorer, chosen in policies.items():
        row: dict[str, float] = {}
        weights, qinis, auucs = [], [], []
        for k, offer in enumerate(offers):
            on = available[:, k] & np.isin(logged, [offer, NO_OFFER])
            treated = logged[on] == offer
            if scores[scorer] is None or treated.all() or not treated.any():
                q = a = float("nan")
            else:
                q = qini_coefficient(y[on], treated, scores[scorer][on, k])
                a = auuc(y[on], treated, scores[scorer][on, k])
            row[f"qini_{offer}"], row[f"auuc_{offer}"] = q, a
            if not np.isnan(q):
                weights.append(treated.sum())
                qinis.append(q)
                auucs.append(a)
        row["qini"] = float(np.average(qinis, weights=weights)) if weights else float("nan")
        row["auuc"] = float(np.average(auucs, weights=weights)) if weights else float("nan")
        value = ips_policy_value(y, logged, chosen, propensity)
        gain = policy_difference(y, logged, chosen, nothing, propensity)
        row["policy_value"], row["policy_value_se"] = value.value, value.standard_error
        row["incremental_value"], row["incremental_value_se"] = gain.value, gain.standard_error
        row["offer_share"] = float(np.mean(chosen != NO_OFFER))
        rows[scorer] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    lead = [*SUMMARY_COLUMNS]
    return table[lead + [c for c in table.columns if c not in lead]]


def _best_single_offer(model: OfferModel, available: np.ndarray) -> np.ndarray:
    """Per row: the available offer with the best positive training uplift, else none."""
    uplift = np.array([model.train_uplift_[o] for o in model.offers_])
    masked = np.where(available, uplift[None, :], -np.inf)
    chosen = np.array(model.offers_, dtype=object)[masked.argmax(axis=1)]
    return np.where(masked.max(axis=1) > 0, chosen, NO_OFFER).astype(object)


def _random_policy(offers: list[str], available: np.ndarray, rng) -> np.ndarray:
    """Uniform over each row's available offers and no offer, like the logging policy."""
    draws = rng.random(available.shape) * available
    arms = np.array(offers, dtype=object)[draws.argmax(axis=1)]
    n_arms = available.sum(axis=1) + 1
    send = rng.random(len(available)) >= 1 / n_arms
    return np.where(send & available.any(axis=1), arms, NO_OFFER).astype(object)

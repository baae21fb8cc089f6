"""Reasons in plain words: every feature phrased or no reason, no dumps, no contradictions,
one reason per fact, and timing reasons that speak of timing only."""

from __future__ import annotations

import re
from collections import ChainMap

import numpy as np
import pytest

from kizuna.features.catalog import FEATURES
from kizuna.serving import reasons
from kizuna.serving.reasons import (
    NOT_REASONS,
    PHRASES,
    FrameRow,
    phrase,
    reason,
    signup_reasons,
    timing_reasons,
    top_reasons,
)

NAN = float("nan")
MODEL_ONLY = [
    "bgnbd_p_alive",
    "bgnbd_p_buy_window",
    "bgnbd_expected_purchases_window",
    "days_since_last_order_now",
    "label_window_days",
]
ALL_FEATURES = [spec.name for spec in FEATURES] + MODEL_ONLY
TYPES = {spec.name: spec.type for spec in FEATURES} | dict.fromkeys(MODEL_ONLY, "float")
# A feature's name and value instead of words ("country: DE", "days since last nps:
# 1.14e+03"), or a contradiction ("no order for 0 days", "0 orders", "1 orders").
RAW_DUMP = re.compile(r"^[a-z0-9 ]+: |: |_|\btrue\b|\bfalse\b|\bnan\b|\bnone\b|e\+\d", re.I)
CONTRADICTION = re.compile(
    r"for 0 days|\b0 [a-z]|\b1 (days|months|years|orders|visits)\b|(^|\s|\()-\d"
)

TYPICAL = {
    "days_since_last_order": 94.0,
    "days_since_last_order_now": 95.2,
    "last_order_epoch": 1.7e9,
    "order_count_30d": 0,
    "order_count_90d": 0,
    "order_count_180d": 2,
    "order_count_365d": 7,
    "order_count_lifetime": 19,
    "spend_30d": 0.0,
    "spend_90d": 0.0,
    "spend_180d": 88.4,
    "spend_365d": 412.0,
    "spend_lifetime": 1290.5,
    "tenure_days": 1140.0,
    "days_since_first_order": 1102.0,
    "purchase_days_lifetime": 18,
    "avg_order_value": 67.9,
    "gap_mean_days": 35.1,
    "gap_median_days": 31.0,
    "gap_std_days": 12.4,
    "last_gap_days": 44.0,
    "overdue_index": 3.03,
    "order_trend_90d": -2,
    "spend_trend_90d": -88.4,
    "discount_share": 0.43,
    "discounted_order_share": 0.6,
    "return_count_365d": 1,
    "return_amount_365d": 24.0,
    "return_rate": 0.05,
    "category_count_365d": 3,
    "top_category": "coffee",
    "top_category_share": 0.7,
    "days_since_top_category": 120.0,
    "second_category": "tea",
    "days_since_second_category": 94.0,
    "sessions_7d": 0,
    "sessions_30d": 2,
    "sessions_90d": 9,
    "page_views_7d": 0,
    "page_views_30d": 11,
    "page_views_90d": 40,
    "email_opens_7d": 1,
    "email_opens_30d": 3,
    "email_opens_90d": 8,
    "email_clicks_7d": 0,
    "email_clicks_30d": 1,
    "email_clicks_90d": 2,
    "push_opens_7d": 0,
    "push_opens_30d": 0,
    "push_opens_90d": 1,
    "sessions_trend_30d": -4,
    "email_opens_trend_30d": 0,
    "days_since_last_engagement": 6.0,
    "unsubscribes_lifetime": 1,
    "unsubscribed_email": True,
    "unsubscribed_sms": False,
    "unsubscribed_push": False,
    "support_tickets_30d": 1,
    "support_tickets_90d": 2,
    "complaints_30d": 0,
    "complaints_90d": 2,
    "last_nps": 3.0,
    "days_since_last_nps": 1140.0,
    "last_csat": 2.0,
    "days_since_last_csat": 420.0,
    "reviews_365d": 2,
    "avg_review_365d": 2.5,
    "exposures_30d": 1,
    "exposures_90d": 3,
    "exposures_365d": 8,
    "control_assignments_365d": 1,
    "redemptions_365d": 2,
    "offer_response_rate_365d": 0.25,
    "days_since_last_contact": 12.0,
    "loyalty_tier": "Gold",
    "country": "DE",
    "consent_email": False,
    "consent_sms": True,
    "consent_push": True,
    "consent_profiling": True,
    "rfm_recency_score": 1,
    "rfm_frequency_score": 4,
    "rfm_monetary_score": 4,
    "rfm_segment": "At risk",
    "bgnbd_p_alive": 0.21,
    "bgnbd_p_buy_window": 0.08,
    "bgnbd_expected_purchases_window": 0.3,
    "label_window_days": 90,
}


def _like(value_of: dict[str, object]) -> dict[str, object]:
    return {name: value_of[TYPES[name]] for name in ALL_FEATURES}


ROWS = {
    "typical": TYPICAL,
    "zeros": _like({"float": 0.0, "int": 0, "bool": False, "string": ""}),
    "ones": _like({"float": 1.0, "int": 1, "bool": True, "string": "pet_food"}),
    "none": _like({"float": None, "int": None, "bool": None, "string": None}),
    "nan": _like({"float": NAN, "int": NAN, "bool": None, "string": NAN}),
    "huge": _like({"float": 1.14e12, "int": 10**9, "bool": True, "string": "x" * 40}),
    "negative": _like({"float": -3.7, "int": -2, "bool": False, "string": "tea"}),
    "numpy": {
        name: np.float64(v) if isinstance(v, float) else np.bool_(v) if isinstance(v, bool) else v
        for name, v in TYPICAL.items()
    },
    "empty": {},
}


def test_every_model_feature_is_phrased_or_marked_as_no_reason() -> None:
    assert set(ALL_FEATURES) <= set(PHRASES) | set(NOT_REASONS)
    assert not set(PHRASES) & set(NOT_REASONS)
    assert set(PHRASES) | set(NOT_REASONS) <= set(ALL_FEATURES), "a phrase for no feature"
    assert {"country", "loyalty_tier", "rfm_segment", "consent_email"} <= set(NOT_REASONS)


@pytest.mark.parametrize("row_name", list(ROWS))
def test_no_feature_is_ever_a_dump_or_a_contradiction(row_name) -> None:
    row = ROWS[row_name]
    for name in ALL_FEATURES:
        text = phrase(name, row)
        assert text is None or (isinstance(text, str) and text), (name, text)
        if text is not None:
            assert not RAW_DUMP.search(text), f"{name} on {row_name}: {text!r}"
            assert not CONTRADICTION.search(text), f"{name} on {row_name}: {text!r}"
    # All at once: one reason per fact and no text twice.
    every = top_reasons(ALL_FEATURES, [1.0] * len(ALL_FEATURES), row, limit=len(ALL_FEATURES))
    facts = [reason(name, row) for name in ALL_FEATURES]
    assert len(every) == len(set(every)) == len({f.fact for f in facts if f})


@pytest.mark.parametrize("name", [*sorted(NOT_REASONS), "mystery_feature"])
def test_facts_about_the_customer_and_unknown_features_are_no_reason(name) -> None:
    assert phrase(name, TYPICAL | {"mystery_feature": 8.0}) is None


@pytest.mark.parametrize(
    ("days", "text"),
    [
        (0, "0 days"),
        (1, "1 day"),
        (59.4, "59 days"),
        (60, "2 months"),
        (420, "14 months"),
        (729, "24 months"),
        (730, "2 years"),
        (1140, "3 years"),
    ],
)
def test_spans_read_as_days_months_or_years(days, text) -> None:
    assert reasons._span(days) == text


RECENCY_CASES = [
    (
        {"days_since_last_order": 94.0, "gap_median_days": 31.0},
        "no order for 94 days; usual gap 31 days",
    ),
    ({"days_since_last_order": 40.0}, "no order for 40 days"),
    ({"days_since_last_order": 0.2, "gap_median_days": 31.0}, "ordered today; usual gap 31 days"),
    ({"days_since_last_order": 1.0}, "ordered yesterday"),
    ({"days_since_last_order": None}, "has never ordered"),
    ({"days_since_last_order": NAN, "order_count_lifetime": 0}, "has never ordered"),
    (
        {"days_since_last_order": 500.0, "gap_median_days": 400.0},
        "no order for 16 months; usual gap 13 months",
    ),
    ({"days_since_last_order": 1140.0}, "no order for 3 years"),
    ({"days_since_last_order_now": 5.0}, "no order for 5 days"),
]


@pytest.mark.parametrize("feature", reasons._RECENCY_FEATURES)
@pytest.mark.parametrize(("row", "text"), RECENCY_CASES)
def test_every_recency_feature_states_the_recency(feature, row, text) -> None:
    assert reason(feature, row) == (reasons.RECENCY, text)


def test_no_recency_is_said_when_the_row_does_not_know_it() -> None:
    assert phrase("bgnbd_p_alive", {"bgnbd_p_alive": 0.3}) is None
    # A null recency with orders counted is an unknown, not "never ordered".
    assert (
        phrase("days_since_last_order", {"days_since_last_order": None, "order_count_lifetime": 3})
        is None
    )


P = {"days_since_last_order": 10.0, "gap_median_days": 31.0}  # a recency to read beside
TEMPLATES = [
    # Gaps: the last one only when it differs from the usual one.
    (
        "last_gap_days",
        P | {"last_gap_days": 60.0},
        "no order for 10 days; usual gap 31 days; last gap 60 days",
    ),
    ("last_gap_days", P | {"last_gap_days": 31.0}, "no order for 10 days; usual gap 31 days"),
    # Order counts: a zero is the recency itself when it is known.
    ("order_count_90d", {"order_count_90d": 2}, "2 orders in 90 days"),
    ("order_count_30d", {"order_count_30d": 1}, "1 order in 30 days"),
    ("order_count_365d", {"order_count_365d": 3}, "3 orders in the last year"),
    ("order_count_90d", {"order_count_90d": 0}, "no orders in 90 days"),
    (
        "order_count_90d",
        {"order_count_90d": 0, "days_since_last_order": 120.0},
        "no order for 120 days",
    ),
    ("order_count_90d", {"order_count_90d": 0, "days_since_last_order": None}, "has never ordered"),
    # A recency inside the window contradicts the count: the count's own words.
    (
        "order_count_30d",
        {"order_count_30d": 0, "days_since_last_order": 10.0},
        "no orders in 30 days",
    ),
    ("order_count_lifetime", {"order_count_lifetime": 12}, "12 orders so far"),
    ("order_count_lifetime", {"order_count_lifetime": 1}, "1 order so far"),
    ("order_count_lifetime", {"order_count_lifetime": 0}, "has never ordered"),
    ("purchase_days_lifetime", {"purchase_days_lifetime": 11}, "ordered on 11 different days"),
    ("purchase_days_lifetime", {"purchase_days_lifetime": 1}, "ordered on a single day so far"),
    ("purchase_days_lifetime", {"purchase_days_lifetime": 0}, "has never ordered"),
    # Spend.
    ("spend_90d", {"spend_90d": 1234.4}, "spent 1,234 in 90 days"),
    ("spend_30d", {"spend_30d": 42.5}, "spent 42.50 in 30 days"),
    ("spend_30d", {"spend_30d": 0.0}, "nothing spent in 30 days"),
    ("spend_30d", {"spend_30d": 0.0, "days_since_last_order": 45.0}, "no order for 45 days"),
    ("spend_lifetime", {"spend_lifetime": 5678.0}, "spent 5,678 so far"),
    ("spend_lifetime", {"spend_lifetime": 0.0}, "has never ordered"),
    ("avg_order_value", {"avg_order_value": 42.5}, "orders worth 42.50 on average"),
    # Tenure.
    ("tenure_days", {"tenure_days": 800.0}, "customer for 2 years"),
    ("tenure_days", {"tenure_days": 45.0}, "customer for 45 days"),
    ("tenure_days", {"tenure_days": 0.0}, "joined today"),
    ("tenure_days", {"tenure_days": 1.0}, "joined yesterday"),
    ("days_since_first_order", {"days_since_first_order": 400.0}, "first order 13 months ago"),
    ("days_since_first_order", {"days_since_first_order": 0.0}, "first order today"),
    ("days_since_first_order", {"days_since_first_order": None}, "has never ordered"),
    # Trends.
    ("order_trend_90d", {"order_trend_90d": -3}, "3 fewer orders than in the 90 days before"),
    ("order_trend_90d", {"order_trend_90d": 1}, "1 more order than in the 90 days before"),
    ("spend_trend_90d", {"spend_trend_90d": -120.4}, "spent 120 less than in the 90 days before"),
    ("spend_trend_90d", {"spend_trend_90d": 35.0}, "spent 35.00 more than in the 90 days before"),
    ("sessions_trend_30d", {"sessions_trend_30d": -5}, "5 fewer visits than in the 30 days before"),
    (
        "email_opens_trend_30d",
        {"email_opens_trend_30d": 2},
        "2 more e-mail opens than in the 30 days before",
    ),
    # Discounts and returns.
    ("discount_share", {"discount_share": 0.43}, "discounts took 43% off their orders' full price"),
    ("discount_share", {"discount_share": 0.0, "order_count_lifetime": 3}, "never used a discount"),
    ("discount_share", {"discount_share": 1.4}, "discounts took 100% off their orders' full price"),
    ("discounted_order_share", {"discounted_order_share": 0.25}, "25% of orders had a discount"),
    ("discounted_order_share", {"discounted_order_share": 1.0}, "every order had a discount"),
    ("return_count_365d", {"return_count_365d": 3}, "3 returns in the last year"),
    ("return_count_365d", {"return_count_365d": 1}, "1 return in the last year"),
    (
        "return_amount_365d",
        {"return_amount_365d": 120.0},
        "returned goods worth 120 in the last year",
    ),
    ("return_rate", {"return_rate": 0.12}, "12% of orders returned"),
    ("return_rate", {"return_rate": 0.001}, "under 1% of orders returned"),
    ("return_rate", {"return_rate": 1.5}, "more returns than orders"),
    # Categories.
    (
        "category_count_365d",
        {"category_count_365d": 3},
        "bought from 3 categories in the last year",
    ),
    ("category_count_365d", {"category_count_365d": 1}, "bought from 1 category in the last year"),
    (
        "top_category",
        {"top_category": "coffee", "top_category_share": 0.7},
        "buys coffee most (70% of spend)",
    ),
    (
        "top_category_share",
        {"top_category": "coffee", "top_category_share": 1.0},
        "buys only coffee",
    ),
    ("top_category", {"top_category": "pet_food"}, "buys pet food most"),
    (
        "days_since_top_category",
        P | {"top_category": "coffee", "days_since_top_category": 45.0},
        "no coffee order for 45 days",
    ),
    (
        "days_since_top_category",
        {"top_category": "coffee", "days_since_top_category": 1.0, "days_since_last_order": 0.0},
        "bought coffee yesterday",
    ),
    (
        "days_since_top_category",
        {"top_category": "coffee", "days_since_top_category": 0.0},
        "bought coffee today",
    ),
    ("second_category", {"second_category": "tea"}, "also buys tea"),
    (
        "days_since_second_category",
        P | {"second_category": "tea", "days_since_second_category": 80.0},
        "no tea order for 80 days",
    ),
    # Engagement.
    ("sessions_30d", {"sessions_30d": 5}, "5 visits in 30 days"),
    ("sessions_30d", {"sessions_30d": 1}, "1 visit in 30 days"),
    ("sessions_7d", {"sessions_7d": 0}, "no visits in 7 days"),
    ("page_views_90d", {"page_views_90d": 12}, "12 pages viewed in 90 days"),
    ("page_views_90d", {"page_views_90d": 0}, "no pages viewed in 90 days"),
    ("email_opens_30d", {"email_opens_30d": 3}, "opened 3 e-mails in 30 days"),
    ("email_opens_30d", {"email_opens_30d": 0}, "opened no e-mails in 30 days"),
    ("email_clicks_7d", {"email_clicks_7d": 1}, "1 e-mail click in 7 days"),
    ("email_clicks_7d", {"email_clicks_7d": 0}, "no e-mail clicks in 7 days"),
    ("push_opens_90d", {"push_opens_90d": 2}, "opened 2 push notifications in 90 days"),
    ("push_opens_90d", {"push_opens_90d": 0}, "opened no push notifications in 90 days"),
    (
        "days_since_last_engagement",
        {"days_since_last_engagement": 40.0},
        "no visit or message opened for 40 days",
    ),
    (
        "days_since_last_engagement",
        {"days_since_last_engagement": 90.0},
        "no visit or message opened for 3 months",
    ),
    (
        "days_since_last_engagement",
        {"days_since_last_engagement": 0.0},
        "visited or opened a message today",
    ),
    (
        "days_since_last_engagement",
        {"days_since_last_engagement": None},
        "has never visited or opened a message",
    ),
    ("unsubscribed_email", {"unsubscribed_email": True}, "unsubscribed from e-mail"),
    (
        "unsubscribed_sms",
        {"unsubscribed_email": True, "unsubscribed_sms": np.bool_(True)},
        "unsubscribed from e-mail and SMS",
    ),
    (
        "unsubscribes_lifetime",
        dict.fromkeys(("unsubscribed_email", "unsubscribed_sms", "unsubscribed_push"), True),
        "unsubscribed from all marketing",
    ),
    (
        "unsubscribes_lifetime",
        {"unsubscribes_lifetime": 2, "unsubscribed_email": False},
        "unsubscribed 2 times",
    ),
    ("unsubscribed_push", {"unsubscribes_lifetime": 1}, "unsubscribed once"),
    # Service.
    ("support_tickets_30d", {"support_tickets_30d": 1}, "1 support ticket in 30 days"),
    ("support_tickets_90d", {"support_tickets_90d": 4}, "4 support tickets in 90 days"),
    ("complaints_90d", {"complaints_90d": 2}, "2 complaints in 90 days"),
    ("complaints_30d", {"complaints_30d": 1}, "1 complaint in 30 days"),
    (
        "last_nps",
        {"last_nps": 3.0, "days_since_last_nps": 1140.0},
        "last NPS answer 3/10, 3 years ago",
    ),
    (
        "days_since_last_nps",
        {"last_nps": 9.0, "days_since_last_nps": 0.0},
        "last NPS answer 9/10, today",
    ),
    ("last_nps", {"last_nps": 3.0}, "last NPS answer 3/10"),
    (
        "last_csat",
        {"last_csat": 2.0, "days_since_last_csat": 420.0},
        "last CSAT answer 2/5, 14 months ago",
    ),
    (
        "days_since_last_csat",
        {"last_csat": 4.0, "days_since_last_csat": 1.0},
        "last CSAT answer 4/5, yesterday",
    ),
    (
        "reviews_365d",
        {"reviews_365d": 2, "avg_review_365d": 2.5},
        "wrote 2 reviews in the last year, 2.5 stars on average",
    ),
    (
        "avg_review_365d",
        {"reviews_365d": 1, "avg_review_365d": 1.0},
        "wrote 1 review in the last year, 1 star",
    ),
    ("reviews_365d", {"reviews_365d": 3}, "wrote 3 reviews in the last year"),
    (
        "reviews_365d",
        {"reviews_365d": 2, "avg_review_365d": 9.0},
        "wrote 2 reviews in the last year",
    ),
    # Offers.
    ("exposures_365d", {"exposures_365d": 8}, "8 offers sent in the last year"),
    ("exposures_30d", {"exposures_30d": 1}, "1 offer sent in 30 days"),
    ("exposures_30d", {"exposures_30d": 0}, "no offers sent in 30 days"),
    ("exposures_90d", {"exposures_90d": 0, "days_since_last_contact": None}, "never sent an offer"),
    (
        "exposures_90d",
        {"exposures_90d": 0, "days_since_last_contact": 3.0},
        "no offers sent in 90 days",
    ),
    (
        "exposures_30d",
        {"exposures_30d": 0, "days_since_last_contact": 45.0},
        "last offer sent 45 days ago",
    ),
    (
        "control_assignments_365d",
        {"control_assignments_365d": 2},
        "held out of 2 campaigns as a control in the last year",
    ),
    (
        "control_assignments_365d",
        {"control_assignments_365d": 1},
        "held out of 1 campaign as a control in the last year",
    ),
    ("redemptions_365d", {"redemptions_365d": 2}, "redeemed 2 offers in the last year"),
    ("redemptions_365d", {"redemptions_365d": 1}, "redeemed 1 offer in the last year"),
    (
        "redemptions_365d",
        {"redemptions_365d": 0, "exposures_365d": 8},
        "redeemed none of the offers sent in the last year",
    ),
    (
        "offer_response_rate_365d",
        {"offer_response_rate_365d": 0.25, "exposures_365d": 8},
        "redeemed 25% of the offers sent in the last year",
    ),
    (
        "offer_response_rate_365d",
        {"offer_response_rate_365d": 0.0, "exposures_365d": 8},
        "redeemed none of the offers sent in the last year",
    ),
    (
        "offer_response_rate_365d",
        {"offer_response_rate_365d": 1.5, "exposures_365d": 2},
        "redeemed more offers than were sent in the last year",
    ),
    ("days_since_last_contact", {"days_since_last_contact": 12.0}, "last offer sent 12 days ago"),
    ("days_since_last_contact", {"days_since_last_contact": 0.0}, "sent an offer today"),
    ("days_since_last_contact", {"days_since_last_contact": 1.0}, "sent an offer yesterday"),
    ("days_since_last_contact", {"days_since_last_contact": None}, "never sent an offer"),
]


@pytest.mark.parametrize(("feature", "row", "text"), TEMPLATES)
def test_each_template_reads_as_written(feature, row, text) -> None:
    assert phrase(feature, row) == text


NO_REASON = [
    ("order_trend_90d", {"order_trend_90d": 0}),
    ("spend_trend_90d", {"spend_trend_90d": 0.001}),
    ("sessions_trend_30d", {"sessions_trend_30d": 0.4}),
    ("discount_share", {"discount_share": 0.0}),  # no orders: nothing to discount
    ("return_count_365d", {"return_count_365d": 0}),
    ("return_rate", {"return_rate": 0.0}),
    ("complaints_90d", {"complaints_90d": 0}),
    ("support_tickets_30d", {"support_tickets_30d": 0}),
    ("reviews_365d", {"reviews_365d": 0, "avg_review_365d": NAN}),
    ("control_assignments_365d", {"control_assignments_365d": 0}),
    ("redemptions_365d", {"redemptions_365d": 0, "exposures_365d": 0}),
    ("offer_response_rate_365d", {"offer_response_rate_365d": 0.0, "exposures_365d": 0}),
    ("unsubscribes_lifetime", {"unsubscribes_lifetime": 0, "unsubscribed_email": False}),
    ("last_nps", {"last_nps": NAN, "days_since_last_nps": 30.0}),
    ("days_since_last_nps", {"days_since_last_nps": 30.0}),
    ("last_nps", {"last_nps": 14.0}),  # outside the scale: not an answer
    ("last_csat", {"last_csat": -1.0}),
    ("top_category_share", {"top_category_share": 0.7}),
    ("days_since_top_category", {"days_since_top_category": 45.0}),
    ("avg_order_value", {"avg_order_value": None}),
]


@pytest.mark.parametrize(("feature", "row"), NO_REASON)
def test_values_that_say_nothing_are_no_reason(feature, row) -> None:
    assert phrase(feature, row) is None


def test_zero_days_and_zero_counts_never_contradict() -> None:
    row = {"days_since_last_order": 0.0, "order_count_30d": 0, "sessions_30d": 0}
    assert phrase("days_since_last_order", row) == "ordered today"
    assert phrase("order_count_lifetime", {"order_count_lifetime": 0}) == "has never ordered"
    texts = [phrase(name, ROWS["zeros"]) for name in ALL_FEATURES]
    assert not [t for t in texts if t and ("for 0 days" in t or re.search(r"\b0 [a-z]", t))]
    assert not [t for t in texts if t and "waiting" in t]


def test_the_top_category_ordered_last_is_the_recency_not_a_second_fact() -> None:
    row = {"days_since_last_order": 45.0, "top_category": "coffee", "days_since_top_category": 45.0}
    assert reason("days_since_top_category", row) == (reasons.RECENCY, "no order for 45 days")
    names = ["days_since_top_category", "days_since_last_order", "top_category"]
    assert top_reasons(names, [0.9, 0.8, 0.1], row) == ["no order for 45 days", "buys coffee most"]


def test_one_recency_reason_then_the_other_facts() -> None:
    row = {
        "days_since_last_order": 94.0,
        "gap_median_days": 31.0,
        "bgnbd_p_alive": 0.2,
        "order_count_90d": 0,
        "complaints_90d": 2.0,
        "sessions_30d": 5,
        "last_nps": NAN,
    }
    names = ["days_since_last_order", "gap_median_days", "bgnbd_p_alive", "order_count_90d"]
    names += ["complaints_90d", "last_nps", "sessions_30d"]
    got = top_reasons(names, [0.9, 0.8, 0.7, 0.6, 0.3, 0.25, 0.2], row)
    assert got == [
        "no order for 94 days; usual gap 31 days",
        "2 complaints in 90 days",
        "5 visits in 30 days",
    ]


def test_features_without_a_reason_are_passed_over_and_the_limit_still_filled() -> None:
    row = TYPICAL | {"last_nps": NAN, "complaints_30d": 0}
    names = ["country", "consent_email", "loyalty_tier", "last_nps", "rfm_segment"]
    names += ["complaints_30d", "mystery_feature", "tenure_days", "sessions_30d", "exposures_365d"]
    got = top_reasons(names, np.linspace(1.0, 0.1, len(names)), row)
    assert got == ["customer for 3 years", "2 visits in 30 days", "8 offers sent in the last year"]


def test_only_contributions_that_raised_the_score_are_reasons() -> None:
    row = {"complaints_90d": 2, "sessions_30d": 5, "exposures_365d": 8}
    names = ["complaints_90d", "sessions_30d", "exposures_365d"]
    assert top_reasons(names, [0.4, 0.0, -0.3], row) == ["2 complaints in 90 days"]
    assert top_reasons(names, [NAN, 0.2, 0.1], row, limit=1) == ["5 visits in 30 days"]
    assert top_reasons(names, [0.3, 0.2, 0.1], row, limit=0) == []


def test_reasons_read_a_frame_row_of_numpy_values() -> None:
    columns = {
        "days_since_last_order": np.array([0.0, 94.0]),
        "gap_median_days": np.array([NAN, 31.0]),
        "unsubscribed_email": np.array([True, False]),
        "top_category": np.array(["coffee", None], dtype=object),
    }
    names = ["days_since_last_order", "unsubscribed_email", "top_category"]
    assert top_reasons(names, [0.3, 0.2, 0.1], FrameRow(columns, 0)) == [
        "ordered today",
        "unsubscribed from e-mail",
        "buys coffee most",
    ]
    assert top_reasons(names, [0.3, 0.2, 0.1], FrameRow(columns, 1)) == [
        "no order for 94 days; usual gap 31 days"
    ]


# --- timing reasons -------------------------------------------------------------------

CHANCES = {"p_buy_7d": 0.58, "p_buy_14d": 0.7, "p_buy_30d": 0.85, "p_buy_60d": 0.93}
DUE_SOON = {
    "days_since_last_order": 27.0,
    "gap_median_days": 31.0,
    "purchase_days_lifetime": 6,
    **CHANCES,
    "p_buy_90d": 0.96,
    "median_days_to_next_purchase": 4.2,
    "overdue": False,
    "buy_unlikely_within_horizon": False,
    "top_category": "coffee",
    "top_category_share": 0.7,
    "days_since_top_category": 27.0,
}
OVERDUE = DUE_SOON | {
    "days_since_last_order": 40.0,
    "overdue": True,
    "median_days_to_next_purchase": 6.0,
}
UNLIKELY = DUE_SOON | {
    "days_since_last_order": 200.0,
    "overdue": True,
    "median_days_to_next_purchase": NAN,
    "buy_unlikely_within_horizon": True,
    "p_buy_90d": 0.23,
}
NO_GAP = {
    "days_since_last_order": 27.0,
    "gap_median_days": None,
    "purchase_days_lifetime": 1,
    "median_days_to_next_purchase": 20.0,
    "p_buy_7d": 0.1,
    "p_buy_30d": 0.55,
    "overdue": None,
    "buy_unlikely_within_horizon": False,
}
TIMING_ROWS = [DUE_SOON, OVERDUE, UNLIKELY, NO_GAP]


def test_timing_of_a_customer_due_soon() -> None:
    assert timing_reasons(DUE_SOON) == [
        "usually orders every 31 days; last order 27 days ago",
        "due in about 4 days (median)",
        "58% likely to order within 7 days",
    ]
    # The category's last order is the last order: said once.
    assert timing_reasons(DUE_SOON, limit=5)[-1] == "orders coffee most (70% of spend)"


def test_timing_of_an_overdue_customer() -> None:
    assert timing_reasons(OVERDUE) == [
        "usually orders every 31 days; last order 40 days ago",
        "due in about 6 days (median)",
        "past their usual gap by 9 days",
    ]
    just = OVERDUE | {"days_since_last_order": 31.4}
    assert "just past their usual gap" in timing_reasons(just)
    assert "past their usual gap" in timing_reasons(OVERDUE | {"gap_median_days": None})


def test_timing_of_a_customer_unlikely_within_the_horizon() -> None:
    got = timing_reasons(UNLIKELY, limit=5)
    assert got == [
        "usually orders every 31 days; last order 200 days ago",
        "unlikely to order within 90 days (23%)",
        "past their usual gap by 169 days",
        "orders coffee most (70% of spend); last coffee order 27 days ago",
    ]
    assert not any("likely to order within" in t and "unlikely" not in t for t in got)


def test_timing_without_a_usual_gap() -> None:
    assert timing_reasons(NO_GAP) == [
        "one order so far, 27 days ago",
        "due in about 20 days (median)",
        "55% likely to order within 30 days",
    ]
    several = NO_GAP | {"purchase_days_lifetime": 3}
    assert timing_reasons(several)[0] == "last order 27 days ago"
    assert timing_reasons({"days_since_last_order": None, "order_count_lifetime": 0}) == [
        "has not ordered yet"
    ]


TIMING_TEMPLATES = [
    (
        DUE_SOON | {"gap_median_days": 1.0, "days_since_last_order": 0.0},
        0,
        "usually orders every day; last order today",
    ),
    (
        DUE_SOON | {"days_since_last_order": 1.0},
        0,
        "usually orders every 31 days; last order yesterday",
    ),
    (DUE_SOON | {"median_days_to_next_purchase": 0.3}, 1, "due today (median)"),
    (DUE_SOON | {"median_days_to_next_purchase": 1.2}, 1, "due tomorrow (median)"),
    (
        DUE_SOON | {"buy_unlikely_within_horizon": np.bool_(True), "p_buy_90d": None},
        1,
        "unlikely to order within 90 days",
    ),
    ({"p_buy_30d": 0.2, "p_buy_90d": 0.45}, 0, "45% likely to order within 90 days"),
    ({"p_buy_7d": 0.999}, 0, "99% likely to order within 7 days"),
    ({"p_buy_90d": 0.001}, 0, "1% likely to order within 90 days"),
    ({"top_category": "coffee", "top_category_share": 1.0}, 0, "orders only coffee"),
    (
        {"top_category": "coffee", "days_since_top_category": 40.0},
        0,
        "orders coffee most; last coffee order 40 days ago",
    ),
]


@pytest.mark.parametrize(("row", "index", "text"), TIMING_TEMPLATES)
def test_each_timing_template_reads_as_written(row, index, text) -> None:
    assert timing_reasons(row, limit=5)[index] == text


@pytest.mark.parametrize("row", TIMING_ROWS + list(ROWS.values()))
def test_timing_reasons_speak_of_timing_not_churn(row) -> None:
    got = timing_reasons(row, limit=5)
    assert len(got) == len(set(got)) <= 5
    for text in got:
        assert "risk" not in text.lower() and "churn" not in text.lower(), text
        assert not RAW_DUMP.search(text) and not CONTRADICTION.search(text), text


def test_timing_reasons_read_the_score_book_facts() -> None:
    scores = {
        "overdue": np.array([True, None], dtype=object),
        "median_days_to_next_purchase": np.array([6.0, NAN]),
    }
    scores |= {
        "buy_unlikely_within_horizon": np.array([False, True]),
        "p_buy_90d": np.array([0.9, 0.3]),
    }
    features = {
        "days_since_last_order": np.array([40.0, 200.0]),
        "gap_median_days": np.array([31.0, NAN]),
    }
    first = ChainMap(FrameRow(scores, 0), FrameRow(features, 0))
    second = ChainMap(FrameRow(scores, 1), FrameRow(features, 1))
    assert timing_reasons(first) == [
        "usually orders every 31 days; last order 40 days ago",
        "due in about 6 days (median)",
        "past their usual gap by 9 days",
    ]
    assert timing_reasons(second) == [
        "last order 200 days ago",
        "unlikely to order within 90 days (30%)",
    ]


def test_signup_reasons_of_a_customer_without_orders() -> None:
    row = {
        "tenure_days": 12.0,
        "days_since_last_engagement": 3.0,
        "days_since_last_contact": None,
        "sessions_30d": 4,
        "email_opens_30d": 0,
    }
    assert signup_reasons(row) == [
        "signed up 12 days ago",
        "no visit or message opened for 3 days",
        "never sent an offer",
    ]
    assert signup_reasons(row, limit=5)[3:] == ["4 visits in 30 days"]
    assert signup_reasons({"tenure_days": 0.0}) == ["signed up today"]
    assert signup_reasons({}) == []


def test_huge_values_stay_words() -> None:
    text = phrase("days_since_last_nps", {"last_nps": 7.0, "days_since_last_nps": 1.14e12})
    assert text is not None and "e+" not in text and text.endswith("years ago")

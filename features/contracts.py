"""Data contracts: the tables Kizuna accepts, column by column.

Each :class:`Contract` says what a valid row of one kind of table looks like. Ingest
validates every incoming row against it, the simulator writes in it, and
``docs/data.md`` is generated from it (``kizuna contracts --markdown``), so the three can
never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import pyarrow as pa

ColumnType = Literal["string", "timestamp", "float", "int", "bool"]

CHANNELS = ("email", "sms", "push", "web", "app", "direct_mail")
#: The channels a customer consents to (a flag each, and unsubscribe events) and offers
#: and campaigns go out on.
CONSENT_CHANNELS = ("email", "sms", "push")
#: The arm of an exposure without an offer (the control) and of a decision to send none.
NO_OFFER = "no_offer"
ORDER_CHANNELS = ("web", "app", "store", "phone", "marketplace", "other")
EVENT_TYPES = (
    "session",
    "page_view",
    "email_open",
    "email_click",
    "push_open",
    "support_ticket",
    "complaint",
    "review",
    "nps_response",
    "csat_response",
    "unsubscribe",
)
OFFER_KINDS = (
    "percent_discount",
    "amount_discount",
    "free_shipping",
    "gift",
    "loyalty_points",
    "content",
)
LOYALTY_TIERS = ("bronze", "silver", "gold", "platinum")
ELIGIBILITY_KEYS = (
    "min_orders",
    "max_orders",
    "loyalty_tiers",
    "countries",
    "segments",
    "new_customers_only",
)

# Value ranges that depend on the event type; rows outside are rejected.
EVENT_VALUE_RANGES: dict[str, tuple[float, float]] = {
    "nps_response": (0, 10),
    "csat_response": (1, 5),
    "review": (1, 5),
}


@dataclass(frozen=True)
class Column:
    """One column of a contract."""

    name: str
    type: ColumnType
    required: bool
    meaning: str
    rules: str = ""
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    not_in_future: bool = False


@dataclass(frozen=True)
class Contract:
    """A kind of table: its columns, primary key and the column that dates a row."""

    kind: str
    description: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    partition_by: str | None
    row_rules: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _consent(channel: str) -> Column:
    return Column(
        f"consent_{channel}",
        "bool",
        False,
        f"The customer agreed to be contacted by {channel}.",
        "true/false, 1/0, yes/no; empty means unknown and is treated as no consent.",
    )


CUSTOMERS = Contract(
    kind="customers",
    description="One row per customer: profile and consent as of the export.",
    key=("customer_id",),
    partition_by="signup_at",
    columns=(
        Column("customer_id", "string", True, "The retailer's stable customer id.", "Unique."),
        Column(
            "signup_at",
            "timestamp",
            False,
            "When the customer joined.",
            "Not in the future.",
            not_in_future=True,
        ),
        Column("country", "string", False, "Country name or ISO code, as the source has it."),
        Column(
            "loyalty_tier",
            "string",
            False,
            "Loyalty tier.",
            "Lower-cased.",
            allowed=LOYALTY_TIERS,
        ),
        _consent("email"),
        _consent("sms"),
        _consent("push"),
        Column(
            "consent_profiling",
            "bool",
            False,
            "The customer allows scoring and profiling.",
            "false means Kizuna never scores this customer; empty means allowed.",
        ),
    ),
    row_rules=("Extra columns named attr_* are kept as customer attributes.",),
)

ORDERS = Contract(
    kind="orders",
    description="One row per order or return.",
    key=("order_id",),
    partition_by="ordered_at",
    columns=(
        Column("order_id", "string", True, "The order's id.", "Unique."),
        Column("customer_id", "string", True, "Who ordered."),
        Column(
            "ordered_at",
            "timestamp",
            True,
            "When the order was placed.",
            "Not in the future.",
            not_in_future=True,
        ),
        Column(
            "amount",
            "float",
            True,
            "Money paid, after discounts, in the shop's currency.",
            "Negative only for returns (is_return = true); returns are never positive.",
        ),
        Column(
            "discount_amount",
            "float",
            False,
            "Discount given on this order.",
            "At least 0; empty means 0.",
            minimum=0,
        ),
        Column("offer_id", "string", False, "The offer redeemed with this order, if any."),
        Column("channel", "string", False, "Where the order was placed.", allowed=ORDER_CHANNELS),
        Column(
            "is_return",
            "bool",
            False,
            "This row gives money back for an earlier order.",
            "Empty means false.",
        ),
    ),
    row_rules=(
        "amount < 0 requires is_return = true (reason amount:negative_not_return).",
        "is_return = true requires amount <= 0 (reason amount:positive_return).",
    ),
)

ORDER_LINES = Contract(
    kind="order_lines",
    description="Optional: the products in each order.",
    key=("order_id", "line_number"),
    partition_by=None,
    columns=(
        Column("order_id", "string", True, "The order the line belongs to."),
        Column(
            "line_number",
            "int",
            False,
            "Position of the line within its order.",
            "Numbered 1, 2, ... in file order within each order when missing.",
            minimum=1,
        ),
        Column("product_id", "string", True, "Product or SKU."),
        Column("category", "string", False, "Product category, for category repurchase cycles."),
        Column(
            "quantity",
            "float",
            True,
            "Units bought.",
            "Not 0; negative only on returned lines.",
        ),
        Column("unit_price", "float", True, "Price of one unit.", "At least 0.", minimum=0),
    ),
    row_rules=("quantity = 0 is rejected (reason quantity:zero).",),
)

EVENTS = Contract(
    kind="events",
    description="Engagement, service and sentiment events.",
    key=("event_id",),
    partition_by="occurred_at",
    columns=(
        Column(
            "event_id", "string", True, "The event's id.", "Unique; a repeated id is a duplicate."
        ),
        Column("customer_id", "string", True, "Whose event it is."),
        Column(
            "occurred_at",
            "timestamp",
            True,
            "When it happened.",
            "Not in the future.",
            not_in_future=True,
        ),
        Column("type", "string", True, "What happened.", "Lower-cased.", allowed=EVENT_TYPES),
        Column(
            "value",
            "float",
            False,
            "A number that goes with the type.",
            "nps_response 0-10, csat_response 1-5, review 1-5 (stars); others free.",
        ),
        Column(
            "channel",
            "string",
            False,
            "Channel of a contact event (opens, clicks, unsubscribe).",
            allowed=CHANNELS,
        ),
    ),
    row_rules=(
        "nps_response, csat_response and review need a value in their range "
        "(reason value:out_of_range).",
    ),
)

OFFERS = Contract(
    kind="offers",
    description="The catalogue of offers that can be sent.",
    key=("offer_id",),
    partition_by="valid_from",
    columns=(
        Column("offer_id", "string", True, "The offer's id.", "Unique."),
        Column("kind", "string", True, "What the offer gives.", allowed=OFFER_KINDS),
        Column(
            "value",
            "float",
            True,
            "Size of the offer: percent for percent_discount, "
            "money for amount_discount, points for loyalty_points.",
            "At least 0.",
            minimum=0,
        ),
        Column(
            "cost",
            "float",
            True,
            "Expected cost to the business when redeemed, beyond the discount.",
            "At least 0.",
            minimum=0,
        ),
        Column("channel", "string", True, "Channel it is sent on.", allowed=CHANNELS),
        Column("valid_from", "timestamp", True, "First moment it may be sent."),
        Column(
            "valid_to", "timestamp", False, "Last moment it may be sent; empty means open-ended."
        ),
        Column(
            "eligibility",
            "string",
            False,
            "Who may get it, as a JSON object.",
            "Keys: " + ", ".join(ELIGIBILITY_KEYS) + ". Empty means everyone.",
        ),
    ),
    row_rules=("valid_to >= valid_from (reason valid_to:before_valid_from).",),
)

EXPOSURES = Contract(
    kind="exposures",
    description="Who was sent which offer, or was held out as control, and with what probability.",
    key=("exposure_id",),
    partition_by="sent_at",
    columns=(
        Column("exposure_id", "string", True, "The exposure's id.", "Unique."),
        Column("customer_id", "string", True, "Who was assigned."),
        Column("offer_id", "string", False, "The offer sent; empty means the control group."),
        Column(
            "sent_at",
            "timestamp",
            True,
            "When it was sent (or would have been, for control).",
            "Not in the future.",
            not_in_future=True,
        ),
        Column("channel", "string", True, "Channel used.", allowed=CHANNELS),
        Column(
            "propensity",
            "float",
            True,
            "Probability with which this assignment (offer or control) was chosen.",
            "Greater than 0 and at most 1.",
            minimum=0,
            maximum=1,
        ),
    ),
    row_rules=("propensity must be > 0 (reason propensity:not_positive).",),
)

#: The customer's fields that can change after sign-up; a change is kept as history.
PROFILE_FIELDS = (
    "country",
    "loyalty_tier",
    "consent_email",
    "consent_sms",
    "consent_push",
    "consent_profiling",
)

PROFILE_CHANGES = Contract(
    kind="profile_changes",
    description="Optional: changes of a customer's consent, tier or country after their "
    "customer row, one row per change (empty columns are unchanged). Kizuna writes them "
    "too: from a re-ingested customer row whose consent, tier or country differs, and "
    "from `profile_change` events. A customer's profile at time t is their customer row "
    "overlaid with each field's latest change at or before t: a feature at every cutoff "
    "and an audit trail.",
    key=("change_id",),
    partition_by="changed_at",
    columns=(
        Column("change_id", "string", True, "The change's id.", "Unique."),
        Column("customer_id", "string", True, "Whose profile changed."),
        Column(
            "changed_at",
            "timestamp",
            True,
            "When the change was made (or learned).",
            "Not in the future.",
            not_in_future=True,
        ),
        *(replace(c, required=False) for c in CUSTOMERS.columns if c.name in PROFILE_FIELDS),
        Column("source", "string", False, "Where the change came from: a file, the API."),
    ),
)

CONTRACTS: dict[str, Contract] = {
    c.kind: c for c in (CUSTOMERS, ORDERS, ORDER_LINES, EVENTS, OFFERS, EXPOSURES, PROFILE_CHANGES)
}

# File stems that name a kind, so `kizuna ingest orders.csv` needs no --kind.
KIND_ALIASES: dict[str, str] = {
    "customers": "customers",
    "orders": "orders",
    "order_lines": "order_lines",
    "lines": "order_lines",
    "events": "events",
    "engagement": "events",
    "offers": "offers",
    "exposures": "exposures",
    "profile_changes": "profile_changes",
    "consents": "profile_changes",
}


ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
}


def arrow_schema(
    contract: Contract, *, strict: bool = False, extra: Sequence[str] = ()
) -> pa.Schema:
    """The Arrow schema of a contract's columns, in order, plus ``extra`` text columns.

    ``strict`` makes required columns non-nullable (what a producer promises); without it
    every column is nullable (what ingest stages before checks are final).
    """
    fields = [
        pa.field(c.name, ARROW_TYPES[c.type], nullable=not (strict and c.required))
        for c in contract.columns
    ]
    return pa.schema(fields + [pa.field(name, pa.string()) for name in extra])


def contract_for(kind: str) -> Contract:
    """The contract of ``kind``, or a ValueError that lists the kinds there are."""
    try:
        return CONTRACTS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; use one of: {', '.join(CONTRACTS)}") from None


def markdown() -> str:
    """The contracts as Markdown tables, the body of docs/data.md."""
    out: list[str] = []
    for c in CONTRACTS.values():
        out.append(f"## {c.kind}\n\n{c.description} Primary key: `{', '.join(c.key)}`.")
        part = f"month of `{c.partition_by}`" if c.partition_by else "month of the order"
        out.append(f"Lake layout: `lake/{c.kind}/month=YYYY-MM/`, by {part}.\n")
        out.append("| column | type | required | meaning | rules |")
        out.append("|---|---|---|---|---|")
        for col in c.columns:
            rules = col.rules
            if col.allowed:
                rules = (rules + " " if rules else "") + "One of: " + ", ".join(col.allowed) + "."
            out.append(
                f"| `{col.name}` | {col.type} | {'yes' if col.required else 'no'} "
                f"| {col.meaning} | {rules} |"
            )
        if c.row_rules:
            out.append("")
            out.extend(f"- {r}" for r in c.row_rules)
        out.append("")
    return "\n".join(out)

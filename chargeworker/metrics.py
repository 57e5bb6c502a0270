"""Prometheus metrics of chargeworker, all prefixed `chargeworker_`.

Labels never carry secrets: a Rev.io account is labelled by its integration
authentication id, never by user name or key.
"""

from prometheus_client import Counter, Gauge, Histogram, Info

BUILD_INFO = Info("chargeworker_build", "Version of the running chargeworker")

MESSAGES_RECEIVED = Counter(
    "chargeworker_messages_received_total", "SQS messages received", ["queue"]
)
MESSAGES_FINISHED = Counter(
    "chargeworker_messages_finished_total",
    "SQS messages finished, by outcome (done, retry, dead_letter, permanent_error)",
    ["queue", "outcome"],
)
MESSAGES_IN_FLIGHT = Gauge(
    "chargeworker_messages_in_flight", "Messages being handled now", ["queue"]
)
HANDLER_DURATION = Histogram(
    "chargeworker_handler_duration_seconds",
    "Time spent handling one message",
    ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
REVIO_REQUESTS = Counter(
    "chargeworker_revio_requests_total",
    "Rev.io requests by endpoint and HTTP status (or error kind)",
    ["endpoint", "status"],
)
REVIO_REQUEST_DURATION = Histogram(
    "chargeworker_revio_request_duration_seconds",
    "Rev.io request duration",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REVIO_THROTTLED = Counter(
    "chargeworker_revio_throttled_total",
    "Rev.io answers that refused a request for its rate limit (429 or quota 403)",
    ["account"],
)
CHARGE_LINES = Counter(
    "chargeworker_charge_lines_total",
    "Charge lines that reached a final state, by kind and outcome",
    ["kind", "outcome"],
)
AMOUNT_CHARGED = Counter(
    "chargeworker_amount_charged_total", "Sum of the amounts of created charge lines"
)
IN_DOUBT_RESOLVED = Counter(
    "chargeworker_in_doubt_resolved_total",
    "In-doubt charge lines settled by listing Rev.io charges, by result (found, absent)",
    ["result"],
)
SUMMARIES_SENT = Counter(
    "chargeworker_summaries_sent_total", "Summary emails handed to SES", ["kind"]
)
COMM_GROUPS_WITHOUT_WINNER = Counter(
    "chargeworker_comm_groups_without_winner_total",
    "Comm groups skipped because no finished queue had results of the instance's kind",
)
ORPHAN_CHARGES = Counter(
    "chargeworker_orphan_charges_total",
    "Charges Rev.io created for a line that another worker had already settled",
)
BAD_MESSAGES = Counter(
    "chargeworker_bad_messages_total",
    "Messages rejected as permanent errors, by queue and reason kind",
    ["queue", "reason"],
)

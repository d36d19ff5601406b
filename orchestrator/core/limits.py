"""Size and count limits. api/ enforces them before proposing; apply re-checks the cheap ones
(counts, ranges) and relies on api/ for byte sizes, which would cost a JSON encode per command."""

MAX_JSON_BYTES = 256 * 1024  # one input/output/variables document
MAX_DEFINITION_BYTES = 512 * 1024
MAX_TASKS_PER_DEFINITION = 500
MAX_NAME_LENGTH = 256
MAX_REQUEST_ID_LENGTH = 128
MAX_REASON_LENGTH = 4096
MAX_POLL_COUNT = 100
MAX_POLL_TIMEOUT_MS = 30_000
MAX_RETRY_COUNT = 100
MAX_DELAY_SECONDS = 7 * 24 * 3600

# Deduplication table retention: an entry is kept at least this long (cluster time) ...
REQUEST_RETENTION_MS = 15 * 60 * 1000
# ... and at most this many are kept (the oldest go first).
MAX_REQUEST_ENTRIES = 200_000
# Terminal workflows kept in replicated state; older ones are evicted in completion order.
MAX_TERMINAL_WORKFLOWS = 20_000

"""Size and count limits. api/ enforces them before proposing; apply re-checks the cheap ones
(counts, ranges) and relies on api/ for byte sizes, which would cost a JSON encode per command."""

MAX_JSON_BYTES = 256 * 1024  # one input/output/variables document
# Nesting of one JSON document (arrays and objects). Deeper documents are refused before they are
# proposed (and script results before they are recorded): encoding and expression resolution
# recurse, and a RecursionError inside apply would depend on the applying thread's stack, which
# differs between replicas.
MAX_JSON_DEPTH = 100
# Nesting of a task input the workflow builds (templates wrapping documents: a loop that wraps a
# variable in itself grows one level per iteration). Beyond it the task fails, deterministically,
# long before encoding would reach Python's recursion limit.
MAX_TASK_INPUT_DEPTH = 300
MAX_DEFINITION_BYTES = 512 * 1024
MAX_TASKS_PER_DEFINITION = 500
MAX_NAME_LENGTH = 256
MAX_REQUEST_ID_LENGTH = 128
MAX_REASON_LENGTH = 4096
MAX_POLL_COUNT = 100
# Replicas a membership command may name as the proposer's configuration.
MAX_MEMBERS = 64
# Items of one batch call (CompleteTasks, StartWorkflows).
MAX_BATCH_ITEMS = 100
# Polls riding behind the completions of one CompleteTasks call (one per task type).
MAX_RIDING_POLLS = 16
MAX_POLL_TIMEOUT_MS = 30_000
# Long polls parked in replicated state at once; beyond it a poll waits on the leader only.
MAX_PARKED_POLLS = 10_000
# Queues whose latest poll time is remembered (task domains pick a domain polled recently).
MAX_POLLED_QUEUES = 10_000
# A domain counts as having an active worker if its queue was polled this recently (Conductor's
# activeWorkerLastPollTimeout).
ACTIVE_WORKER_MS = 10_000
MAX_RETRY_COUNT = 100
MAX_DELAY_SECONDS = 7 * 24 * 3600

# Deduplication table retention: an entry is kept at least this long (cluster time) ...
REQUEST_RETENTION_MS = 15 * 60 * 1000
# ... and at most this many are kept (the oldest go first).
MAX_REQUEST_ENTRIES = 200_000
# Terminal workflows kept in replicated state; older ones are evicted in completion order,
# into the durable history (orchestrator/history/), which keeps them for the retention below.
# A constant, so memory and snapshots are bounded by the running set plus this window, never
# by history. 5 000 keeps a snapshot load (on the tick thread of a catching-up follower) near
# 0.3 s, and the workflows that just ended (the ones clients read and act on most) in memory.
MAX_TERMINAL_WORKFLOWS = 5_000
# The durable history: how long an archived workflow is kept after it ended (SetHistoryRetention
# changes it), and how often retention runs (a replicated timer: every replica deletes the same
# rows at the same log position).
DEFAULT_HISTORY_RETENTION_MS = 7 * 24 * 3600 * 1000
MAX_HISTORY_RETENTION_MS = 100 * 366 * 24 * 3600 * 1000
MAX_HISTORY_WORKFLOWS = 1_000_000_000
HISTORY_EXPIRE_PERIOD_MS = 60_000

# Workflow language limits (checked at registration unless noted).
MAX_NESTING_DEPTH = 8  # task lists inside forks / switch cases / loops, counting the top level
MAX_FORK_BRANCHES = 64  # static forkTasks lists in one FORK_JOIN
MAX_DYNAMIC_FORK_TASKS = 256  # tasks one FORK_JOIN_DYNAMIC may fan out to (checked at run time)
MAX_SWITCH_CASES = 256  # decisionCases of one SWITCH / DECISION
MAX_LOOP_ITERATIONS = 1000  # DO_WHILE iterations (run time: beyond it the loop task fails)
MAX_TASKS_PER_WORKFLOW = 10_000  # task records one execution may create (run time)
MAX_SUBWORKFLOW_DEPTH = 8  # SUB_WORKFLOW nesting at run time (cycles are rejected at registration)
# Workflows started by workflows (START_WORKFLOW and SUB_WORKFLOW, counted along the whole chain
# from the workflow a client started): a START_WORKFLOW whose name comes from input may name its
# own workflow, which would recurse inside apply.
MAX_CHAIN_DEPTH = 32
# Workflows one chain may start over its life (the client-started workflow at its top included):
# depth and the per-command bound alone let a chain that starts two of itself per generation
# grow to 2**32; counted in State.chains while any workflow of the chain runs.
MAX_CHAIN_WORKFLOWS = 1000
# Workflows one command may create (a chain started synchronously, or a fan-out of them).
MAX_WORKFLOWS_PER_COMMAND = 64
# A WAIT's duration, and how far ahead its `until` may lie (a due time must stay a small int).
MAX_WAIT_MS = 10 * 366 * 24 * 3600 * 1000
# Ids the core builds from other ids (tasks, children) stay under this many characters.
MAX_BUILT_ID_LENGTH = 128
# Task priorities (StartWorkflow's `priority`): 0..99, higher first. A waiting task's effective
# priority grows by one per PRIORITY_AGING_MS waited (processors/flow.py), so a task goes before
# any task of priority q queued (q - p) * PRIORITY_AGING_MS after it: none starves.
MAX_PRIORITY = 99
PRIORITY_AGING_MS = 1_000
# Task definitions' flow limits (per queue): concurrentExecLimit, rateLimitPerFrequency, and the
# window rateLimitFrequencyInSeconds (a rate window keeps up to rateLimitPerFrequency times).
MAX_CONCURRENT_EXEC_LIMIT = 1_000_000
MAX_RATE_LIMIT_PER_FREQUENCY = 100_000
MAX_RATE_LIMIT_FREQUENCY_SECONDS = 24 * 3600
# The replicated event log (processors/eventlog.py): the newest events kept in memory (the
# oldest are dropped first), a correlation key's length, and event handlers and their actions.
MAX_EVENTS = 10_000
# ... and by their encoded size (codec.dumps_bytes of each record): without it 10 000 payloads
# of MAX_JSON_BYTES would hold ~2.5 GiB in every replica's memory and snapshot.
MAX_EVENT_LOG_BYTES = 64 * 1024 * 1024
MAX_CORRELATION_KEY_LENGTH = 256
MAX_EVENT_HANDLERS = 1_000
MAX_HANDLER_ACTIONS = 16
MAX_READ_EVENTS = 1_000
# Message correlation (processors/messages.py): events appended from events (a handler starts a
# workflow whose EVENT task publishes, and so on, all in one apply) nest at most this deep; a
# message waits for its WAIT_FOR_EVENT at most this long, and at most this many wait at once
# (the oldest dropped first; each holds only its offset, the payload stays in the event log).
MAX_EVENT_CHAIN = 8
MAX_MESSAGE_TTL_MS = 7 * 24 * 3600 * 1000
MAX_BUFFERED_MESSAGES = 10_000
# Durable subscriptions (processors/subscriptions.py): the workflow change feed keeps its newest
# records by count and by size (subscription_appliers.record_size), like the event log; consumer
# groups over both streams together.
MAX_WORKFLOW_CHANGES = 50_000
MAX_WORKFLOW_FEED_BYTES = 16 * 1024 * 1024
MAX_CONSUMER_GROUPS = 1_000

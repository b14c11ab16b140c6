"""AWS's limits that Conveyor must stay within: sizes in bytes, durations in seconds.

One definition each: queues.yaml's checks, the publisher, the DLQ redrive and the
workers' retries read them here. Standard library only, so that anything may
import it (the Python client included).
"""

from __future__ import annotations

# Sizes (bytes).
#: SNS: the largest message Publish takes, and what one PublishBatch call's messages
#: may add up to. SQS takes larger messages: SNS is the narrower pipe.
SNS_MAX_MESSAGE_BYTES = 256 * 1024
#: SQS: what one SendMessageBatch call's bodies and attributes may add up to, as the
#: DLQ redrive counts it: the same 256 KiB as SNS's, which every SQS endpoint takes.
SQS_MAX_BATCH_BYTES = SNS_MAX_MESSAGE_BYTES

# Durations (seconds): they bound queues.yaml's settings and the workers' retry delays.
#: SQS: the longest visibility timeout (12 h), so also the longest retry delay.
MAX_VISIBILITY_TIMEOUT_S = 12 * 3600
#: SQS: the shortest and the longest message retention (1 min, 14 days).
MIN_RETENTION_S = 60
MAX_RETENTION_S = 14 * 86400
#: SQS: the longest delivery delay (15 min).
MAX_DELAY_S = 900
#: SQS: the highest maxReceiveCount of a redrive policy.
MAX_RECEIVE_COUNT = 1000

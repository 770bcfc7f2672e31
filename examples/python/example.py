"""jetway from Python, through a client generated from openapi/openapi.json.

Generate the client first (docs/sdks.md), then:

    JETWAY_URL=http://127.0.0.1:8081 JETWAY_TOKEN=$(jetway token --admin --read '*' --publish '>') \
        python3 example.py

It creates a stream, publishes bytes with an Idempotency-Key (twice: the repeat is a duplicate),
shows a failed precondition as a typed Problem, publishes a batch, creates a consumer, fetches with
a long poll, acks, and reads a message back raw. Every step checks what it got and the program
exits non-zero on the first surprise. The last line it prints is a JSON summary.
"""

import io
import json
import os
import sys
import time
import uuid

from jetway_client import AuthenticatedClient
from jetway_client.api.consumers import ack_messages, fetch_messages, put_consumer
from jetway_client.api.publish import publish_batch, publish_message
from jetway_client.api.streams import put_stream
from jetway_client.models import (
    AckAction,
    AckItem,
    AcksRequest,
    BatchItem,
    ConsumerConfig,
    DeliverFrom,
    FetchRequest,
    Problem,
    ProblemCode,
    PublishResult,
    StreamConfig,
)
from jetway_client.types import File, Response

STREAM = os.environ.get("JETWAY_STREAM", "SDK_PY")
SUBJECT = f"{STREAM.lower()}.orders"
# Bytes that are neither UTF-8 nor JSON: they must come back exactly as sent.
PAYLOAD = bytes(range(256))
# Keys and the consumer are new on every run, so that the program can run again and again.
RUN = uuid.uuid4().hex[:8]


def expect(response: Response, *statuses: int):
    """The parsed body of a response whose status is one of `statuses`."""
    if response.status_code not in statuses:
        sys.exit(f"expected {statuses}, got {response.status_code}: {response.content!r}")
    return response.parsed


def publish_with_retries(key: str, payload: bytes) -> PublishResult:
    """Publish with an Idempotency-Key, retrying what is safe to retry with the same key.

    503 and 429 carry Retry-After; a 504 means the outcome is unknown. Retrying with the same key
    stores the message at most once: a repeat answers 200 with `duplicate: true`.
    """
    for _ in range(5):
        response = publish_message.sync_detailed(
            SUBJECT,
            client=client,
            body=File(payload=io.BytesIO(payload), mime_type="application/octet-stream"),
            idempotency_key=key,
        )
        if response.status_code in (200, 201):
            return response.parsed
        if response.status_code in (429, 503, 504):
            time.sleep(int(response.headers.get("retry-after", "1")))
            continue
        sys.exit(f"publish failed: {response.status_code} {response.parsed}")
    sys.exit("publish did not succeed after 5 attempts")


client = AuthenticatedClient(
    base_url=os.environ.get("JETWAY_URL", "http://127.0.0.1:8080"),
    token=os.environ["JETWAY_TOKEN"],
    # Longer than the longest long poll below.
    timeout=30.0,
)

# 1. A stream (201 created, or 200 when it already exists so configured).
expect(
    put_stream.sync_detailed(
        STREAM, client=client, body=StreamConfig(subjects=[f"{STREAM.lower()}.>"])
    ),
    200,
    201,
)

# 2. Bytes, byte-exact, with an Idempotency-Key; the same key again is a duplicate.
first = publish_with_retries(f"order-{RUN}-1", PAYLOAD)
again = publish_with_retries(f"order-{RUN}-1", PAYLOAD)
assert not first.duplicate and again.duplicate and again.seq == first.seq, (first, again)

# 3. A precondition that does not hold: 412, as a typed Problem with a stable code.
failed = publish_message.sync_detailed(
    SUBJECT,
    client=client,
    body=File(payload=io.BytesIO(b"late"), mime_type="application/octet-stream"),
    nats_expected_last_subject_sequence=str(first.seq + 1000),
)
problem = expect(failed, 412)
assert isinstance(problem, Problem) and problem.code == ProblemCode.PRECONDITION_FAILED, problem

# 4. A batch: each item gets its own result.
batch = expect(
    publish_batch.sync_detailed(
        client=client,
        body=[
            BatchItem(subject=SUBJECT, data={"order_id": 1002}, idempotency_key=f"order-{RUN}-2"),
            BatchItem(subject=SUBJECT, data="plain text"),
        ],
    ),
    200,
)
assert batch.stored == 2 and batch.failed == 0, batch

# 5. A durable consumer from the first message, then a long-poll fetch and an ack of everything
# fetched.
consumer = f"workers-{RUN}"
expect(
    put_consumer.sync_detailed(
        STREAM,
        consumer,
        client=client,
        body=ConsumerConfig(
            deliver_policy=DeliverFrom.BY_START_SEQUENCE,
            opt_start_seq=first.seq,
            ack_wait="30s",
            max_deliver=5,
        ),
    ),
    201,
)
fetched = expect(
    fetch_messages.sync_detailed(
        STREAM,
        consumer,
        client=client,
        body=FetchRequest(max_messages=10, wait="5s"),
    ),
    200,
)
assert fetched.messages and fetched.messages[0].seq == first.seq, fetched
acked = expect(
    ack_messages.sync_detailed(
        client=client,
        body=AcksRequest(
            acks=[AckItem(ack_id=m.ack_id, action=AckAction.ACK) for m in fetched.messages]
        ),
    ),
    200,
)
assert all(r.status == 200 for r in acked.results), acked

# 6. The first message back, raw: the generated get_message parses the JSON representation,
# so the raw read goes through the client's own httpx client (it carries the token).
raw = client.get_httpx_client().get(
    f"/v1/streams/{STREAM}/messages/{first.seq}",
    headers={"Accept": "application/octet-stream"},
)
assert raw.status_code == 200 and raw.content == PAYLOAD, (raw.status_code, raw.content[:32])

print(
    json.dumps(
        {
            "stream": STREAM,
            "seq": first.seq,
            "duplicate": again.duplicate,
            "precondition": problem.code.value,
            "batch_stored": batch.stored,
            "fetched": len(fetched.messages),
            "acked": len(acked.results),
            "raw_bytes_equal": raw.content == PAYLOAD,
            "raw_content_type": raw.headers.get("content-type"),
        }
    )
)

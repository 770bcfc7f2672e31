#!/usr/bin/env python3
"""Verifies recorded push deliveries with the Standard Webhooks reference library.

    PYTHONPATH=.tools/standardwebhooks python3 tests/push/verify.py DELIVERIES.json

DELIVERIES.json: {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "<base64>"}]}.
Prints one line per delivery; exit status 0 when every signature verifies, 1 otherwise.
"""

import base64
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        recorded = json.load(f)
    hook = Webhook(recorded["secret"])
    failures = 0
    for index, delivery in enumerate(recorded["deliveries"]):
        body = base64.b64decode(delivery["body"])
        try:
            hook.verify(body, delivery["headers"], json_parse=False)
            print(f"{index}: verified {delivery['headers'].get('webhook-id')}")
        except WebhookVerificationError as err:
            failures += 1
            print(f"{index}: NOT verified: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

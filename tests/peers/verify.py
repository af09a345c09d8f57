"""Verifies deliveries captured by tests/it/signatures.rs with the official
Standard Webhooks library from PyPI (`standardwebhooks`).
Usage: python verify.py CASES.json (the cases of verify.mjs; "hub" ones are
left to it). Prints one line per case; exits 1 if any did not come out as
expected."""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

wrong = 0
with open(sys.argv[1], encoding="utf-8") as f:
    cases = json.load(f)
for i, c in enumerate(cases):
    if c["scheme"] != "standard":
        continue
    try:
        Webhook(c["secret"]).verify(c["body"].encode("utf-8"), c["headers"])
        valid = True
    except WebhookVerificationError:
        valid = False
    ok = valid == c["expect"]
    wrong += 0 if ok else 1
    print(f"{i}: standard {'valid' if valid else 'invalid'} {'as expected' if ok else 'NOT AS EXPECTED'}")
sys.exit(1 if wrong else 0)

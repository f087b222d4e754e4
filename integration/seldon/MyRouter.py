"""A Seldon ROUTER for the end-to-end tests (integration/tests/external_router.rs).

Run by the real Seldon microservice wrapper (PyPI `seldon-core`):

    PREDICTIVE_UNIT_ID=<model> ROUTER_FEEDBACK_LOG=<file> \
        seldon-core-microservice MyRouter --service-type ROUTER --http-port N ...

`route` answers the child named by the request itself: the first feature of the SeldonMessage
(`{"data": {"ndarray": [[N, ...]]}}` routes to child N; -1 is every child, -2 none). A first
feature of 99 answers child 0 after a 2 s pause (a slow router). `send_feedback` appends each
reward, with the routing Seldon read from `response.meta.routing[PREDICTIVE_UNIT_ID]`, to
`ROUTER_FEEDBACK_LOG` as one JSON line.
"""

import json
import os
import time


class MyRouter:
    def __init__(self):
        self.feedback_log = os.environ.get("ROUTER_FEEDBACK_LOG", "router-feedback.jsonl")

    def route(self, features, feature_names):
        values = list(getattr(features, "flat", features))
        first = int(float(values[0])) if values else 0
        if first == 99:
            time.sleep(2)
            return 0
        return first

    def send_feedback(self, features, feature_names, reward, truth, routing=None):
        values = [float(v) for v in getattr(features, "flat", [])]
        with open(self.feedback_log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"reward": reward, "routing": routing, "features": values}) + "\n")
        return []

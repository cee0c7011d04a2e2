"""The recording reverse proxy: a request log (meter/request_log.py) of any OpenAI-compatible client's
traffic to a real endpoint, for `kura-perf calibrate` (server.py says what it forwards and records;
process.py runs it beside a run). Nothing is imported here, so `kura-perf`'s parser stays light."""

DEFAULT_TIMEOUT_S = 600.0  # per forwarded request, to the answer's last byte

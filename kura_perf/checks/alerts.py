"""Alerts for failed regression checks: a log line, a row in the alerts table, and a JSON POST to
the webhook the caller passes (RunSettings.alert_webhook, from KURA_PERF_ALERT_WEBHOOK at the edge). Delivery is best effort: a webhook that is down
is logged and noted on the alert row, never fatal, and the alert is not raised twice.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pandas as pd

from kura_perf.checks.records import frame_records
from kura_perf.settings.paths import Paths
from kura_perf.store import query, write_record
from kura_perf.store.writer import new_record_id

log = logging.getLogger("kura_perf.alerts")

WEBHOOK_TIMEOUT_S = 5.0
FIRST_LOOKBACK = timedelta(days=1)  # a sensor with no cursor yet alerts on the last day only
OVERLAP = timedelta(minutes=10)  # re-read a little before the cursor: rows may land slightly out of order


def unalerted_regressions(paths: Paths, since: datetime | None, limit: int = 100) -> list[dict]:
    """Failed regression rows checked after `since` (minus an overlap) that have no alert yet, oldest first."""
    since = (since - OVERLAP) if since else datetime.now(timezone.utc) - FIRST_LOOKBACK
    rows = query(paths.metrics, f"""
        SELECT * FROM regressions
        WHERE checked_at > ? AND record_id NOT IN (SELECT check_record_id FROM alerts
                                                  WHERE check_record_id IS NOT NULL)
        ORDER BY checked_at LIMIT {int(limit)}""", [pd.Timestamp(since)])
    return frame_records(rows)


def alert_text(row: dict) -> str:
    return (f"kura_perf regression: {row['stage']} {row['profile']}|{row['scale']} {row['check_name']} "
            f"(run {row.get('run_id')}, host {row.get('host_fingerprint')}): {row['message']}")


def post_json(url: str, payload: dict, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "kura-perf"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - URL set by the operator
        response.read()


def _where(url: str) -> str:
    """Where an alert went, without the URL's path or query (webhook URLs often embed a secret token)."""
    parts = urlsplit(url)
    return f"webhook {parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def raise_alert(paths: Paths, row: dict, webhook_url: str | None, logger: logging.Logger | None = None) -> dict:
    """Log, POST (to `webhook_url` unless None) and record one alert for a failed regression row."""
    logger = logger or log
    text = alert_text(row)
    logger.warning(text)
    delivered = ["log"]
    if webhook_url:
        payload = {"text": text, "kind": "regression", **{k: row.get(k) for k in (
            "check_name", "stage", "profile", "scale", "value", "baseline", "ratio", "noise_low", "noise_high",
            "samples", "message", "run_id", "host_fingerprint", "code_version", "checked_at", "record_id")}}
        try:
            post_json(webhook_url, payload)
            delivered.append(_where(webhook_url))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.error("alert webhook delivery failed (%s): %s", _where(webhook_url), exc)
            delivered.append(f"{_where(webhook_url)} FAILED: {exc}"[:300])
    alert = {"record_id": new_record_id(), "raised_at": datetime.now(timezone.utc), "kind": "regression",
             "stage": row.get("stage"), "profile": row.get("profile"), "scale": row.get("scale"), "message": text,
             "check_record_id": row.get("record_id"), "delivered_to": "; ".join(delivered), "run_id": row.get("run_id")}
    write_record(paths.metrics, "alerts", alert)
    return alert

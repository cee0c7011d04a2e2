"""Errors a user can act on. The CLI prints their message; nothing else should leak as a traceback."""


class KuraPerfError(Exception):
    """Base for errors whose message is meant for the user."""


class InputDataError(KuraPerfError):
    """Conversation data that cannot be read: names the file, line and field."""

    def __init__(self, path, line, field, expected, got=None):
        self.path, self.line, self.field, self.expected, self.got = path, line, field, expected, got
        where = f"{path}" + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        tail = f" (got {got})" if got is not None else ""
        super().__init__(f"{where}: {what}expected {expected}{tail}")


class ProfileError(KuraPerfError):
    """A profile that does not validate: names the profile, key and allowed values."""


class StageError(KuraPerfError):
    """A stage that failed for a reason the user should see."""


class BreakingPoint(KuraPerfError):
    """A stage stopped by a guard (memory or time limit): recorded as where the pipeline breaks."""

    def __init__(self, stage, reason, peak_rss_mb=None):
        self.stage, self.reason, self.peak_rss_mb = stage, reason, peak_rss_mb
        peak = f", peak {peak_rss_mb:.0f} MB" if peak_rss_mb is not None else ""
        super().__init__(f"breaking point in stage '{stage}': {reason}{peak}")

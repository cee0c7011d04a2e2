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


def did_you_mean(name: str, choices) -> str:
    """" (did you mean 'summaries'?)" for the choice nearest a mistyped `name` (difflib), "" when none is
    close: a refusal of a typo then says what was meant, not only the list to search through."""
    import difflib  # stdlib, and only when a name is refused

    nearest = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean '{nearest[0]}'?)" if nearest else ""


def where_path(path) -> str:
    """A path as a refusal names it: an absolute path as it is; a relative one with what it was resolved
    against ("chats.jsonl, resolved against the working directory /home/me: /home/me/chats.jsonl"), as
    the same relative path means another file when the command runs from another folder."""
    import os  # stdlib, and only when a path is refused

    text = os.fspath(path)
    if os.path.isabs(text):
        return text
    cwd = os.getcwd()
    return f"{text}, resolved against the working directory {cwd}: {os.path.join(cwd, text)}"


class KuraSpecError(KuraPerfError):
    """A Kura spec (`kura==0.5.2`, `path:/src/kura`, `git:/src/kura@<sha>`) that cannot be parsed, resolved,
    installed or imported: refused before any stage runs, with pip's or git's reason in one line."""

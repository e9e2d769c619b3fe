"""The one log line per request, written at a fraction of what `logging` costs per record.

A record through `logging` costs ~20 us here (LogRecord's thread and process lookups,
the handler chain, `strftime` per record), 4-5% of a small GET. `kobako serve` logs to
one `StreamHandler` with `LINE_FORMAT`; where that is how the "kobako" logger's records
end up, the line is formatted here (the time prefix made once per second) and written to
that handler's stream under its lock, byte for byte what the handler would write. In any
other setup (a test's caplog, filters, another format or handler) every line goes
through `logging` as usual.
"""

from __future__ import annotations

import logging
import time

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RequestLog:
    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._handler: logging.StreamHandler | None = None  # type: ignore[type-arg]
        self._second = -1
        self._prefix = ""

    def line(self, message: str) -> None:
        """Log `message` at INFO, as `logger.info("%s", message)` would."""
        log = self._log
        if not log.isEnabledFor(logging.INFO):
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            # Formatter.formatTime's default: local time, then ",mmm". The logging setup
            # is looked at again each second, in case it was changed.
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._handler = _plain_handler(log)
            self._second = second
        handler = self._handler
        if handler is None or handler.level > logging.INFO:
            log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "%s", (message,),
                                      None, "line"))
            return
        text = f"{self._prefix},{int((now - second) * 1000):03d} INFO {log.name}: {message}\n"
        with handler.lock:  # type: ignore[union-attr]
            try:
                handler.stream.write(text)
                handler.stream.flush()
            except Exception:
                handler.handleError(log.makeRecord(log.name, logging.INFO, __file__, 0,
                                                   "%s", (message,), None, "line"))


def _plain_handler(logger: logging.Logger) -> logging.StreamHandler | None:  # type: ignore[type-arg]
    """The one StreamHandler with LINE_FORMAT that the logger's records reach, if that
    is all they reach unfiltered; None otherwise."""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        handlers.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if type(handler) is not logging.StreamHandler or handler.filters:
        return None
    formatter = handler.formatter
    if (type(formatter) is not logging.Formatter or formatter._fmt != LINE_FORMAT
            or formatter.datefmt is not None or formatter.converter is not time.localtime
            or formatter.default_msec_format != "%s,%03d"):
        return None
    return handler

"""A fork server for the crash tests: ``banditlake serve`` without paying its imports.

Killing and restarting ``serve`` twenty times costs mostly the interpreter's start and the
imports (seconds each on a loaded 2-core machine). This process imports the service once
and then, for each JSON line on stdin (``{"env": …, "args": […], "log": path}``), forks
a child that becomes a new session leader with that environment and runs
``banditlake`` with those arguments, as the console script would; it answers the child's
pid on stdout. Everything the service does at start (stores, recovery, replay) runs in the
child: only the imported modules are shared with earlier children. Children are reaped
automatically (SIGCHLD ignored here, restored in the child).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback


def main() -> None:
    import api.app  # noqa: F401 - the imports every child would otherwise pay for
    from api.cli import main as banditlake

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.environ.clear()
                os.environ.update(request["env"])
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(log, 2)
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
                code = banditlake(request["args"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)


if __name__ == "__main__":
    main()

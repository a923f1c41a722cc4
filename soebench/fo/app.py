"""Launch the FiftyOne App on a dataset, bound to loopback unless told otherwise."""

from __future__ import annotations

import socket
from typing import Any

from soebench.errors import SoebenchError

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5151


def check_port_free(address: str, port: int) -> None:
    """Raise :class:`SoebenchError` if ``address:port`` cannot be bound now.

    FiftyOne's server child would otherwise retry for a while and end in a traceback
    (``ServiceListenTimeout``). ``SO_REUSEADDR`` as the App server sets it, so a port in
    TIME_WAIT is not mistaken for a busy one.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            raise SoebenchError(f"cannot start the FiftyOne App on {address}:{port}: {exc.strerror or exc}",
                                hint="choose another port (--port), or stop what is listening there") from exc


def launch(dataset: Any, *, port: int = DEFAULT_PORT, address: str = DEFAULT_ADDRESS, view: Any = None) -> Any:
    """Start the App server for ``dataset`` (no browser is opened); return the FiftyOne session.

    The caller closes it (``session.close()``) or blocks on ``session.wait()``.
    """
    from soebench.fo.db import connect

    fo = connect()
    check_port_free(address, port)
    from fiftyone.core.service import ServiceException

    try:
        return fo.launch_app(dataset, view=view, port=port, address=address, auto=False)
    except (OSError, ServiceException) as exc:  # e.g. the port was taken between the check and the start
        raise SoebenchError(f"cannot start the FiftyOne App on {address}:{port}: {type(exc).__name__}: {exc}",
                            hint="choose another port (--port)") from exc


def url(address: str, port: int) -> str:
    host = "localhost" if address in ("127.0.0.1", "localhost") else address
    return f"http://{host}:{port}/"

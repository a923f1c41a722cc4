"""Launch the FiftyOne App on a dataset, bound to loopback unless told otherwise."""

from __future__ import annotations

from typing import Any

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5151


def launch(dataset: Any, *, port: int = DEFAULT_PORT, address: str = DEFAULT_ADDRESS, view: Any = None) -> Any:
    """Start the App server for ``dataset`` (no browser is opened); return the FiftyOne session.

    The caller closes it (``session.close()``) or blocks on ``session.wait()``.
    """
    from soebench.errors import SoebenchError
    from soebench.fo.db import connect

    fo = connect()
    try:
        return fo.launch_app(dataset, view=view, port=port, address=address, auto=False)
    except OSError as exc:
        raise SoebenchError(f"cannot start the FiftyOne App on {address}:{port}: {exc}",
                            hint="choose another --port") from exc


def url(address: str, port: int) -> str:
    host = "localhost" if address in ("127.0.0.1", "localhost") else address
    return f"http://{host}:{port}/"

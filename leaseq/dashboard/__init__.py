"""A live web dashboard for leaseq queues (extra: ``pip install 'leaseq[dashboard]'``).

:func:`create_app` returns a Starlette app to mount in an ASGI app of your own; :func:`serve`
runs it with uvicorn (what ``leaseq dashboard`` does). See ``docs/dashboard.md``.
"""

from .app import create_app
from .security import UnsafeBind, check_bind, is_loopback
from .serve import bound_socket, serve

__all__ = ["UnsafeBind", "bound_socket", "check_bind", "create_app", "is_loopback", "serve"]

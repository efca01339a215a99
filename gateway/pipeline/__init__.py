"""Processing of complete sets: claim, validate, route, acknowledge, archive.

Entry points for the daemon (``gateway serve``) and the tools:

- :class:`Pipeline` (``run()``, ``notify_stored()``/``on_stored()``, ``aclose()``,
  ``run_once()``, ``sweep()``, ``publish()``);
- :func:`ensure_gateway_identity` (the gateway's signing key and certificate);
- :func:`trace` (``gateway trace``: where is my file?).
"""

from gateway.pipeline.identity import IdentityError, ensure_gateway_identity
from gateway.pipeline.publish import Published
from gateway.pipeline.worker import Pipeline

__all__ = ["IdentityError", "Pipeline", "Published", "ensure_gateway_identity"]

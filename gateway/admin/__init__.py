"""The admin plane: the access managers' console and the admin API, on their own HTTPS listener.

- :mod:`gateway.admin.server`: the listener (aiohttp, TLS 1.2+, its own port, never a
  sender-facing one), the security headers and the per-request boundary;
- :mod:`gateway.admin.auth`: who is asking (a console session cookie, or an API token), CSRF,
  and the login methods (password, TOTP, eID client certificate);
- :mod:`gateway.admin.problems`: registry refusals as HTTP answers;
- :mod:`gateway.admin.api`: the JSON API (``/admin/api/v1/``) over the registry's services;
- :mod:`gateway.admin.console`: the server-rendered pages over the same services.

Neither the API nor the console decides anything: every rule is the registry's rule table.
"""

"""The gateway's edge primitives: what guards, handlers and observers share.

`Request`/`Response` (request.py), routes and the guard/interceptor protocols (routes.py),
the error envelope (errors.py), the auth seam (auth.py), trace and request ids
(request_id.py) and the request observer protocol (observer.py). This package imports only
leaves and the domain, so `middleware/` and `observability/` can use it without importing
`http/`, which sits above them all.
"""

"""The HTTP API under ``/service/v1`` (CONTRACT §1): one module per resource.

``app`` composes the resources into one Klein application and maps errors
to statuses; ``common`` holds what the resources share (parameters, response
bodies, the error table); ``request`` is the twisted.web request and channel
the site uses.
"""

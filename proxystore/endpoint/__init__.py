"""Endpoints: per-site object servers that peer with each other.

Run one with the ``proxystore-endpoint`` CLI (`proxystore.endpoint.cli`);
talk to it from Python through ``EndpointStore``. Importing this package
loads no server dependencies.
"""

"""Credentials: TLS material (tls.py, certs.py), tokens (tokens.py) and roles (permissions.py).

The server reads what is configured here; api/auth.py turns it into a decision per call.
"""

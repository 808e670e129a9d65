"""pyveda 1.0's ``vedart.core``: :mod:`vedart.core.runtime` and
:mod:`vedart.core.scope`, aliases of VedaRT's runtime and scopes (see
docs/python.md, "Coming from pyveda 1.0")."""

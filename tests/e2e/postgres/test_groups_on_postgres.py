"""The group flow of e2e/test_groups.py, unchanged, on a PostgreSQL node.

Every ``test_*`` function of that module is collected here again; this package's conftest
replaces the ``server`` fixture with one started with ``--database postgresql://...``.
"""

from __future__ import annotations

from e2e import test_groups as _flow

people = _flow.people  # the module's own fixtures come along (they depend on ``server``)
globals().update({name: fn for name, fn in vars(_flow).items() if name.startswith("test_")})

"""The veth pair's fixtures, for every test of the shell that asks for them."""

from tests.helpers.veth import psock, topo  # noqa: F401

"""The rules of a host's INPUT firewall (role tfserving_input_firewall), checked and with
every source made an IPv4 address or network on the controller.

{{ [{'port': 9090, 'what': 'Prometheus (tfserving_monitoring_allow)',
     'sources': ['10.0.0.1', '192.168.4.0/24', 'ctl.example']}]
   | tfserving.fleet.tfserving_input_rules }}
-> [{'port': 9090, 'what': 'Prometheus (tfserving_monitoring_allow)',
     'sources': ['10.0.0.1', '10.0.9.7', '192.168.4.0/24']}]

A host name is resolved here, at run time, to all its IPv4 addresses, so the rules file holds
addresses only and loads at boot without DNS. A name that does not resolve, an IPv6 source
(the rules are IPv4-only), an empty source (a host without its address) or a bad port fails
the run, naming the rule and the source. Sources are sorted and without duplicates, so the
same inventory writes the same file.

Why not the library: ansible.builtin.iptables changes the running rules and cannot resolve a
name once for a rules file that loads at boot without DNS; this checks and resolves sources.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# A DNS name (letters, digits, hyphens, dots); anything else is neither name nor address.
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*\.?$")

Resolver = Callable[[str], Iterable[str]]


def _resolve(name: str) -> list[str]:
    """Every IPv4 address of NAME as the controller resolves it."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def _networks(source: Any, what: str, resolve: Resolver) -> list[ipaddress.IPv4Network]:
    text = str(source if source is not None else "").strip()
    if not text:
        raise AnsibleFilterError(
            f"An empty source in the rules of {what}: a host without the address its"
            " variable should give, or an empty entry in the list."
        )
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        network = None
    if network is not None:
        if network.version != 4:
            raise AnsibleFilterError(
                f"{text} in the sources of {what} is IPv6: the host rules are IPv4 only"
                " (the ports listen on IPv4 addresses). Give its IPv4 address."
            )
        return [network]
    if not HOST_NAME.match(text):
        raise AnsibleFilterError(
            f"{text!r} in the sources of {what} is neither an IPv4 address, a network"
            " (CIDR) nor a host name."
        )
    addresses = sorted(set(resolve(text)))
    if not addresses:
        raise AnsibleFilterError(
            f"{text} in the sources of {what} does not resolve to an IPv4 address on the"
            " controller: give its address, or fix its name."
        )
    return [ipaddress.ip_network(address) for address in addresses]


def tfserving_input_rules(
    rules: Iterable[Mapping[str, Any]], resolve: Resolver | None = None
) -> list[dict[str, Any]]:
    """RULES with each port an int and its sources IPv4 networks ("a.b.c.d" for a host)."""
    resolver = resolve or _resolve
    checked = []
    for rule in rules or []:
        what = str(rule.get("what") or f"port {rule.get('port')}")
        try:
            port = int(rule["port"])
        except (KeyError, TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            raise AnsibleFilterError(f"The port of {what} is {rule.get('port')!r}: give 1-65535.")
        sources = rule.get("sources") or []
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Iterable):
            raise AnsibleFilterError(
                f"The sources of {what} must be a list of addresses, networks or host names;"
                f" got {sources!r}."
            )
        networks = {net for source in sources for net in _networks(source, what, resolver)}
        ordered = sorted(networks, key=lambda net: (int(net.network_address), net.prefixlen))
        checked.append(
            {
                "port": port,
                "what": what,
                "sources": [
                    str(net.network_address) if net.prefixlen == 32 else str(net) for net in ordered
                ],
            }
        )
    return checked


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"tfserving_input_rules": tfserving_input_rules}

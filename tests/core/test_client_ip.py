"""Who the client is behind reverse proxies, and the KEEL_TRUSTED_PROXIES setting."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from keel.core.client_ip import limit_key, parse_networks, resolve_client_ip
from keel.core.config import ConfigError, load_settings

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.10, 2001:db8::/32")


class TestParseNetworks:
    def test_reads_addresses_and_networks_separated_by_commas(self) -> None:
        assert parse_networks(" 10.0.0.0/8,192.0.2.10 ,, 2001:db8::/32 ") == (
            ip_network("10.0.0.0/8"),
            ip_network("192.0.2.10/32"),
            ip_network("2001:db8::/32"),
        )

    def test_empty_means_no_proxy_is_trusted(self) -> None:
        assert parse_networks("") == ()

    @pytest.mark.parametrize("entry", ["10.0.0.300", "proxy.internal", "10.0.0.0/33", "*"])
    def test_refuses_what_is_not_an_address_or_network(self, entry: str) -> None:
        with pytest.raises(ValueError, match="is not an IP address or CIDR network"):
            parse_networks(f"10.0.0.1,{entry}")

    def test_refuses_a_network_with_host_bits_and_says_what_was_probably_meant(self) -> None:
        with pytest.raises(ValueError, match=r"did you mean 10\.0\.0\.0/8\?"):
            parse_networks("10.0.0.1/8")


class TestLimitKey:
    @pytest.mark.parametrize(
        ("ip", "key"),
        [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            (None, "unknown"),
            ("not-an-address", "not-an-address"),
        ],
    )
    def test_an_ipv6_client_is_its_64_bit_prefix(self, ip: str | None, key: str) -> None:
        assert limit_key(ip) == key


class TestResolveClientIp:
    def test_without_trusted_proxies_the_peer_is_the_client(self) -> None:
        assert resolve_client_ip("203.0.113.7", ["198.51.100.1"], ()) == "203.0.113.7"

    def test_a_spoofed_header_from_an_untrusted_peer_changes_nothing(self) -> None:
        assert resolve_client_ip("203.0.113.7", ["198.51.100.1, 10.0.0.1"], PROXIES) == "203.0.113.7"

    def test_a_trusted_proxy_names_the_client(self) -> None:
        assert resolve_client_ip("10.1.2.3", ["198.51.100.1"], PROXIES) == "198.51.100.1"

    def test_walks_a_chain_of_trusted_proxies_from_the_right(self) -> None:
        # The client spoofed 6.6.6.6; the first untrusted address from the right is the real one.
        forwarded = ["6.6.6.6, 198.51.100.1, 192.0.2.10", "10.9.9.9"]
        assert resolve_client_ip("10.1.2.3", forwarded, PROXIES) == "198.51.100.1"

    def test_a_single_address_proxy_entry_trusts_that_address_only(self) -> None:
        assert resolve_client_ip("192.0.2.10", ["198.51.100.1"], PROXIES) == "198.51.100.1"
        assert resolve_client_ip("192.0.2.11", ["198.51.100.1"], PROXIES) == "192.0.2.11"

    def test_ipv6_networks_work(self) -> None:
        assert resolve_client_ip("2001:db8::5", ["2001:db9::1"], PROXIES) == "2001:db9::1"
        assert resolve_client_ip("2001:db9::5", ["198.51.100.1"], PROXIES) == "2001:db9::5"

    def test_an_ipv4_mapped_peer_counts_as_its_ipv4_address(self) -> None:
        assert resolve_client_ip("::ffff:10.1.2.3", ["198.51.100.1"], PROXIES) == "198.51.100.1"
        assert resolve_client_ip("::ffff:203.0.113.7", [], PROXIES) == "203.0.113.7"

    @pytest.mark.parametrize(
        "forwarded",
        [["not-an-ip"], ["198.51.100.1, garbage"], ["198.51.100.1,"], ["198.51.100.1:443"], ["unknown"]],
    )
    def test_garbage_in_the_chain_falls_back_to_the_peer(self, forwarded: list[str]) -> None:
        assert resolve_client_ip("10.1.2.3", forwarded, PROXIES) == "10.1.2.3"

    def test_garbage_left_of_the_client_is_never_read(self) -> None:
        assert resolve_client_ip("10.1.2.3", ["garbage, 198.51.100.1"], PROXIES) == "198.51.100.1"

    def test_a_trusted_peer_without_the_header_is_the_client(self) -> None:
        assert resolve_client_ip("10.1.2.3", [], PROXIES) == "10.1.2.3"

    def test_when_every_hop_is_trusted_the_leftmost_is_the_client(self) -> None:
        assert resolve_client_ip("10.1.2.3", ["10.0.0.1, 10.0.0.2"], PROXIES) == "10.0.0.1"

    def test_a_peer_that_is_not_an_address_is_passed_through(self) -> None:
        assert resolve_client_ip("testclient", ["198.51.100.1"], PROXIES) == "testclient"
        assert resolve_client_ip(None, ["198.51.100.1"], PROXIES) is None


@pytest.mark.usefixtures("isolated_env")
class TestTrustedProxiesSetting:
    def test_is_read_from_a_comma_separated_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KEEL_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.10")

        assert load_settings().trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("192.0.2.10/32"))

    def test_defaults_to_none(self) -> None:
        assert load_settings().trusted_proxies == ()

    def test_an_invalid_entry_is_a_one_line_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KEEL_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")

        with pytest.raises(ConfigError) as raised:
            load_settings()

        assert str(raised.value) == "KEEL_TRUSTED_PROXIES: 'proxy.internal' is not an IP address or CIDR network"

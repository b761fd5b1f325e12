"""Ray addresses whose shape cannot work are named before Ray is asked (it retries them)."""

from __future__ import annotations

import pytest

from relia._rayaddress import ray_address_problem


@pytest.mark.parametrize(
    "address",
    ["auto", "local", "head:6379", "10.0.0.1:1", "[::1]:65535", "ray://head:10001", "bogus::"],
)
def test_addresses_ray_can_take_pass(address: str) -> None:
    assert ray_address_problem(address) is None


@pytest.mark.parametrize(
    "address", ["h:0", "h:65536", "127.0.0.1:99999", "[::1]:70000", "ray://h:0"]
)
def test_a_port_out_of_range_is_named(address: str) -> None:
    assert ray_address_problem(address) == f"{address}: port must be 1-65535"


@pytest.mark.parametrize("address", ["http://127.0.0.1:1", "https://h:8265", "grpc://h:1"])
def test_a_scheme_other_than_ray_is_not_a_ray_address(address: str) -> None:
    assert ray_address_problem(address) == (
        f"{address}: not a Ray address: give host:6379 (the GCS) or ray://host:10001"
    )

"""The key schedule's HKDF against cryptography's own HKDF, for every length and hash TLS 1.3 can use."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.tls.key_schedule import hkdf_expand_label, hkdf_extract

_HASH = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}


@settings(max_examples=200, deadline=None)
@given(
    hash_name=st.sampled_from(["sha256", "sha384"]),
    secret=st.binary(min_size=1, max_size=64),
    label=st.binary(min_size=1, max_size=40),
    context=st.binary(max_size=64),
    length=st.integers(min_value=1, max_value=120),
)
def test_expand_label_matches_cryptography(hash_name: str, secret: bytes, label: bytes, context: bytes,
                                           length: int) -> None:
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((len(context),)) + context
    expected = HKDFExpand(_HASH[hash_name], length, info).derive(secret)
    assert hkdf_expand_label(hash_name, secret, label, context, length) == expected


@settings(max_examples=100, deadline=None)
@given(hash_name=st.sampled_from(["sha256", "sha384"]), salt=st.binary(max_size=64), ikm=st.binary(max_size=64))
def test_extract_matches_cryptography(hash_name: str, salt: bytes, ikm: bytes) -> None:
    assert hkdf_extract(hash_name, salt, ikm) == HKDF.extract(_HASH[hash_name], salt, ikm)

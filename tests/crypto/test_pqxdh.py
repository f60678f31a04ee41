"""Tests of PQXDH: both sides agree, each input matters, and bad base keys are refused."""

from __future__ import annotations

import random

import pytest

from kurir.crypto.curve import KeyPair, PublicKey
from kurir.crypto.errors import InvalidMessageError, InvalidPreKeyMessageError
from kurir.crypto.kem import KemKeyPair, KemType
from kurir.crypto.pqxdh import AliceSession, initialize_alice, initialize_bob, is_canonical
from kurir.crypto.prekeys import IdentityKeyPair
from kurir.crypto.session import SessionState

P = 2**255 - 19


class Keys:
    def __init__(self, seed: int, kem_type: KemType = KemType.MLKEM1024) -> None:
        rng = random.Random(seed).randbytes
        self.rng = rng
        self.alice = IdentityKeyPair.generate(rng)
        self.bob = IdentityKeyPair.generate(rng)
        self.base = KeyPair.generate(rng)
        self.signed = KeyPair.generate(rng)
        self.one_time = KeyPair.generate(rng)
        self.kem = KemKeyPair.generate(rng, kem_type)

    def alice_side(self, *, one_time: bool = True) -> AliceSession:
        return initialize_alice(
            our_identity=self.alice,
            our_base_key=self.base,
            their_identity=self.bob.public_key,
            their_signed_pre_key=self.signed.public_key,
            their_one_time_pre_key=self.one_time.public_key if one_time else None,
            their_kyber_pre_key=self.kem.public_key,
            rng=self.rng,
        )

    def bob_side(
        self, ciphertext: bytes, *, one_time: bool = True, base: PublicKey | None = None
    ) -> SessionState:
        return initialize_bob(
            our_identity=self.bob,
            our_signed_pre_key=self.signed,
            our_one_time_pre_key=self.one_time if one_time else None,
            our_kyber_pre_key=self.kem,
            their_identity=self.alice.public_key,
            their_base_key=base or self.base.public_key,
            their_kyber_ciphertext=ciphertext,
        )


def agree(alice: SessionState, bob: SessionState) -> bool:
    """Alice's receiving chain on Bob's signed prekey is Bob's first sending chain."""
    chain = alice.receiver_chain(bob.sender_chain.ratchet_key.public_key)
    return chain is not None and chain.chain_key == bob.sender_chain.chain_key


@pytest.mark.parametrize("kem_type", list(KemType))
@pytest.mark.parametrize("one_time", [True, False])
def test_both_sides_agree(kem_type: KemType, one_time: bool) -> None:
    keys = Keys(1, kem_type)
    alice = keys.alice_side(one_time=one_time)
    bob = keys.bob_side(alice.kyber_ciphertext, one_time=one_time)
    assert agree(alice.state, bob)
    assert alice.state.alice_base_key == bob.alice_base_key == keys.base.public_key.serialize()
    assert alice.state.session_version == bob.session_version == 4
    assert alice.kyber_ciphertext[0] == kem_type


def test_every_input_matters() -> None:
    keys = Keys(2)
    alice = keys.alice_side()
    assert not agree(alice.state, keys.bob_side(alice.kyber_ciphertext, one_time=False))
    other = Keys(3)
    _, foreign_ciphertext = keys.kem.public_key.encapsulate(other.rng)
    assert not agree(alice.state, keys.bob_side(foreign_ciphertext))
    assert not agree(alice.state, keys.bob_side(alice.kyber_ciphertext, base=other.base.public_key))


@pytest.mark.parametrize(
    "u",
    [0, 1, P - 1, P, P + 1, 2**255 - 1],
    ids=["zero", "order-4", "minus-one", "p", "p+1", "top"],
)
def test_non_canonical_or_small_order_base_keys_are_refused(u: int) -> None:
    key = PublicKey((u % 2**256).to_bytes(32, "little"))
    assert not is_canonical(key)
    keys = Keys(4)
    alice = keys.alice_side()
    with pytest.raises(InvalidPreKeyMessageError):
        keys.bob_side(alice.kyber_ciphertext, base=key)


def test_honest_keys_are_canonical() -> None:
    rng = random.Random(5).randbytes
    assert all(is_canonical(KeyPair.generate(rng).public_key) for _ in range(20))


def test_kem_ciphertext_of_the_wrong_type_is_refused() -> None:
    keys = Keys(6, KemType.MLKEM1024)
    alice = keys.alice_side()
    with pytest.raises(InvalidMessageError):
        keys.bob_side(b"\x08" + alice.kyber_ciphertext[1:])

"""Redeem codes as such: unguessable, without look-alikes, typos caught by the check
character, only keyed hashes stored; a million made in seconds (measured in the README)."""

from __future__ import annotations

import itertools

from gateway.channels.codes import ALPHABET, LENGTH, CodeHasher, generate, normalize, pretty


def test_codes_are_distinct_and_use_only_the_alphabet():
    codes = list(generate(20_000))
    assert len(set(codes)) == 20_000
    assert all(len(code) == LENGTH for code in codes)
    assert set("".join(codes)) == set(ALPHABET)
    assert not set("01OILU") & set(ALPHABET)
    assert len(ALPHABET) % 2 == 0  # Luhn mod N catches every single typo only for even N


def test_every_code_reads_back_as_typed_or_pretty_or_lower_case():
    for code in generate(200):
        assert normalize(code) == code
        assert normalize(pretty(code)) == code
        assert normalize(pretty(code).lower().replace("-", " ")) == code


def test_every_single_mistyped_character_is_caught():
    for code in generate(20):
        for i, other in itertools.product(range(LENGTH), ALPHABET):
            if other != code[i]:
                assert normalize(code[:i] + other + code[i + 1 :]) is None


def test_most_swapped_neighbours_are_caught():
    caught = total = 0
    for code in generate(200):
        for i in range(LENGTH - 1):
            if code[i] != code[i + 1]:
                total += 1
                caught += normalize(code[:i] + code[i + 1] + code[i] + code[i + 2 :]) is None
    assert caught / total > 0.9


def test_what_cannot_be_a_code_is_refused_before_any_lookup():
    code = next(generate(1))
    for typed in ("", code[:-1], code + "2", "0" + code[1:], "x" * 33, code.replace(code[0], "!")):
        assert normalize(typed) is None


def test_stored_hashes_are_keyed():
    code = next(generate(1))
    one, other = CodeHasher("a" * 32), CodeHasher("b" * 32)
    assert one(code) == one(code) != other(code)
    assert code not in one(code)
    assert len(one(code)) == 32
    derived = CodeHasher.for_settings("", "j" * 32)
    assert derived(code) == CodeHasher.for_settings("", "j" * 32)(code) != one(code)

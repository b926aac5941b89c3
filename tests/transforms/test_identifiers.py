import datetime as dt

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.cn import ric

from transforms.identifiers import gb11643_check_chars, is_card_number, is_mobile, is_prc_id, luhn_check_digits


@given(st.lists(st.integers(0, 9), min_size=17, max_size=17))
def test_gb11643_check_character_agrees_with_stdnum(digits):
    body = "".join(map(str, digits))
    assert gb11643_check_chars(np.array([digits]))[0] == ric.calc_check_digit(body + "0")


@given(st.lists(st.integers(0, 9), min_size=12, max_size=18))
def test_luhn_check_digit_agrees_with_stdnum(digits):
    body = "".join(map(str, digits))
    assert str(luhn_check_digits(np.array([digits]))[0]) == luhn.calc_check_digit(body)


def test_resident_id_validation():
    valid = "11010519491231002X"
    assert is_prc_id(valid)
    assert not is_prc_id(valid[:-1] + "3")  # check digit
    assert not is_prc_id("110105" + "20260230" + "0012")  # 30 February (check digit irrelevant)
    body = "990000" + "19900307" + "123"  # no such area code
    assert not is_prc_id(body + gb11643_check_chars(np.array([[int(c) for c in body]]))[0])
    assert not is_prc_id("31010119900307123")  # 17 characters
    future = "310101" + (dt.date.today() + dt.timedelta(days=400)).strftime("%Y%m%d") + "123"
    assert not is_prc_id(future + gb11643_check_chars(np.array([[int(c) for c in future]]))[0])


def test_card_and_mobile_validation():
    assert is_card_number("6222021234567890128") == luhn.is_valid("6222021234567890128")
    assert is_card_number("4111111111111111") and not is_card_number("4111111111111112")
    assert not is_card_number("9111111111111111111")  # no scheme starts with 9
    assert is_mobile("13812345678") and not is_mobile("12812345678") and not is_mobile("1381234567")

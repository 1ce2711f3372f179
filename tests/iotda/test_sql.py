"""The forwarding rules' SQL (models/sql.py): the user guide's examples quoted, its limits,
and hostile clauses answered with SqlError (IOTDA.000006 at the API), never anything else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.iotda.models.sql import SqlError, parse_select, parse_where

# The guide's source document for its worked example (device message report).
GUIDE_DOC: dict[str, Any] = {
    "resource": "device.message", "event": "report", "event_time": "20151212T121212Z",
    "notify_data": {
        "header": {"device_id": "********", "product_id": "ABC123456789", "app_id": "********",
                   "gateway_id": "********", "node_id": "ABC123456789",
                   "tags": [{"tag_value": "testTagValue", "tag_key": "testTagName"}]},
        "body": {"topic": "topic", "content": {"temperature": 40, "humidity": 24}}}}


def test_the_guides_worked_example() -> None:
    # "SELECT notify_data.header.device_id AS device_id, notify_data.body.content
    #  WHERE notify_data.body.content.temperature > 38"
    select = parse_select("notify_data.header.device_id AS device_id, notify_data.body.content")
    where = parse_where("notify_data.body.content.temperature > 38")
    assert where.holds(GUIDE_DOC)
    assert select.apply(GUIDE_DOC) == {"device_id": "********",
                                       "notify_data.body.content": {"temperature": 40,
                                                                    "humidity": 24}}


@pytest.mark.parametrize(("clause", "holds"), [
    ("notify_data.body.content.temperature >= 40 AND notify_data.body.content.humidity <= 24",
     True),
    ("notify_data.body.content.temperature = 5 OR notify_data.body.content.humidity = 24", True),
    ("notify_data.body.content.temperature <> 40", False),
    ("notify_data.body.content.temperature + 2 > 41", True),
    ("notify_data.body.content.temperature / notify_data.body.content.humidity > 1", True),
    ("notify_data.body.topic LIKE 'to%'", True),
    ("notify_data.body.topic NOT LIKE '%ic'", False),
    ("notify_data.body.topic LIKE 't_pic'", True),
    ("notify_data.header.node_id || '-' || notify_data.body.topic = 'ABC123456789-topic'", True),
    ("notify_data.body.nothing IS NULL", True),
    ("notify_data.body IS NOT NULL", True),
    ("notify_data.header.product_id IN ('productId1','ABC123456789')", True),
    ("notify_data.header.product_id NOT IN ('productId1','ABC123456789')", False),
    ("GET_TAG('testTagName') = 'testTagValue'", True),
    ("CONTAINS_TAG('other')", False),
    ("STARTS_WITH(notify_data.header.product_id,'ABC') AND ENDS_WITH('abcd','bcd')", True),
    ("UPPER(notify_data.body.topic) = 'TOPIC' AND SUBSTRING('abcdef',1,3) = 'bc'", True),
    ("NOT (notify_data.body.content.temperature > 38)", False),
    ("notify_data.body.nothing = notify_data.body.nothing", False),  # NULL = NULL is false
])
def test_the_guides_operators_and_functions(clause: str, holds: bool) -> None:
    assert parse_where(clause).holds(GUIDE_DOC) is holds


def test_properties_functions_read_the_reported_services() -> None:
    doc = {"notify_data": {"body": {"services": [
        {"service_id": "Battery", "properties": {"batteryLevel": 80}},
        {"service_id": "BatteryBackup", "properties": {"batteryLevel": 20}}]}}}
    assert parse_where("GET_SERVICE_PROPERTY('Battery','batteryLevel') = 80").holds(doc)
    assert parse_where("CONTAINS_SERVICES('Backup',true)").holds(doc)
    assert not parse_where("CONTAINS_SERVICES('Backup')").holds(doc)
    picked = parse_select("GET_SERVICES('Battery',true) AS all_, "
                          "GET_SERVICE_PROPERTIES('Battery') AS p, 5 AS n, 'info' AS s")
    assert picked.apply(doc) == {"all_": doc["notify_data"]["body"]["services"],
                                 "p": {"batteryLevel": 80}, "n": 5, "s": "info"}


@pytest.mark.parametrize("clause", [
    "'constant'",  # a constant needs AS
    "CONCAT('a','b')",  # so does a function
    ", ".join(f"{i} AS a{chr(97 + i)}" for i in range(11)),  # eleven AS clauses
    "x AS " + "a" * 33,  # an AS name over 32
    "x AS \"two words\"",
    "'" + "a" * 51 + "' AS s",  # a string constant over 50
    "2147483648 AS n",  # over 32 bits
    "NOSUCH(1) AS x",
    "a..b",
    "a AS",
])
def test_bad_selects_are_sql_errors(clause: str) -> None:
    with pytest.raises(SqlError):
        parse_select(clause)


@pytest.mark.parametrize("clause", [
    "a = = 1", "a IN ()", "a IN ('x', 1)", "a LIKE b", "(" * 200 + "a" + ")" * 200,
    "NOT " * 200 + "a", "a IS 5", "a.[0]", "SUBSTRING(a) = 'x'",
])
def test_bad_wheres_are_sql_errors(clause: str) -> None:
    with pytest.raises(SqlError):
        parse_where(clause)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab.'\"()=<>!|*/+-, 01%_") + [
    "AND ", "OR ", "NOT ", "IS ", "NULL ", "IN ", "LIKE ", "AS ", "GET_TAG"]), max_size=40))
def test_any_clause_parses_or_is_an_sql_error_and_never_raises_when_run(
        pieces: list[str]) -> None:
    text = "".join(pieces)
    for parse in (parse_select, parse_where):
        try:
            parsed = parse(text)
        except SqlError:
            continue
        result = parsed.apply(GUIDE_DOC) if parse is parse_select else parsed.holds(GUIDE_DOC)
        assert result is not None


def test_a_function_given_the_wrong_type_selects_nothing_rather_than_failing() -> None:
    picked = parse_select("UPPER(5) AS u, SUBSTRING(notify_data.body, 1) AS v, "
                          "notify_data.body.topic AS t")
    assert picked.apply(GUIDE_DOC) == {"t": "topic"}
    assert parse_where("LOWER(3) = 'x'").holds(GUIDE_DOC) is False

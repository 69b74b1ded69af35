"""policy.toml: the default file, strict validation, one-line errors naming the path."""

from __future__ import annotations

import hashlib

import pytest

from policies.epsilon import MICRO_PER_EPSILON
from policies.load import (
    DEFAULT_POLICY_TOML,
    PolicyFileError,
    load_policy,
    parse_policy,
    write_default_policy,
)
from synthetic.schema import column_classes


def test_default_policy_written_once_and_loaded(tmp_path):
    path = tmp_path / "policy.toml"
    assert write_default_policy(path) is True
    assert write_default_policy(path) is False  # never overwritten
    policy, digest = load_policy(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.epsilon.max_per_query == 1 * MICRO_PER_EPSILON
    assert policy.epsilon.default_per_query == 500_000
    assert set(policy.purposes.refused) >= {"immigration_enforcement", "policing"}
    assert policy.organisation_types["press"].special_category_allowed is False


def test_existing_policy_is_kept(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_POLICY_TOML.replace("min_cell_count = 10", "min_cell_count = 20"))
    write_default_policy(path)
    assert load_policy(path)[0].min_cell_count == 20


def test_digest_changes_with_the_file(tmp_path):
    path = tmp_path / "policy.toml"
    write_default_policy(path)
    _, before = load_policy(path)
    path.write_text(DEFAULT_POLICY_TOML + "\n# a comment\n")
    assert load_policy(path)[1] != before


def test_every_schema_column_is_classified():
    policy = parse_policy(DEFAULT_POLICY_TOML)
    effective = policy.effective_columns()
    assert set(effective) == set(column_classes())
    assert effective["pupils.upn"] == "direct_identifier"
    assert effective["census.nationality"] == "restricted"
    assert policy.column_class("nope.nope") is None


def _with(old: str, new: str) -> str:
    assert old in DEFAULT_POLICY_TOML
    return DEFAULT_POLICY_TOML.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min_cell_count = [", "not valid TOML"),
        ("x = " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (_with("version = 1", "version = 1\nsurprise = true"), "surprise: Extra inputs"),
        (
            _with('"policing", "commercial_marketing"]', '"policing", "commercial_marketing", 7]'),
            "purposes.refused[3]: Input should be a valid string",
        ),
        (
            _with('refused = ["immigration_enforcement", ', "refused = ["),
            "purposes: refused must include immigration_enforcement",
        ),
        (
            _with('refused = ["', 'refused = ["educational_research", "'),
            "purposes: purposes both allowed and refused: educational_research",
        ),
        (_with('refused = ["', 'refused = ["Bad Name", "'), "is not a snake_case name"),
        (_with('refused = ["', 'refused = ["policing", "'), "lists a purpose twice"),
        (
            _with('educational = ["', 'educational = ["astrology", "'),
            "educational purposes not in allowed: astrology",
        ),
        (_with("min_cell_count = 10", 'min_cell_count = "10"'), "min_cell_count: Input should"),
        (_with("min_cell_count = 10", "min_cell_count = -1"), "min_cell_count: Input should be"),
        (_with("retention_years = 25", "retention_years = 0"), "retention_years"),
        (_with("max_per_query = 1.0 ", "max_per_query = 0.0 "), "epsilon.max_per_query"),
        (_with("max_per_query = 1.0 ", "max_per_query = -1 "), "epsilon.max_per_query"),
        (_with("max_per_query = 1.0 ", 'max_per_query = "x" '), "is not a number"),
        (_with("max_per_query = 1.0 ", "max_per_query = true "), "must be a number, not bool"),
        (_with("max_per_query = 1.0 ", "max_per_query = nan "), "not a finite number"),
        (_with("max_per_query = 1.0 ", "max_per_query = 1e300 "), "absurdly large"),
        (
            _with("max_per_query = 1.0 ", "max_per_query = 0.1234567 "),
            "more precise than one micro-epsilon",
        ),
        (_with("default_per_query = 0.5", "default_per_query = 2"), "default_per_query is more"),
        (_with("dataset_cap = 50", "dataset_cap = 0.5"), "max_per_query is more than dataset_cap"),
        (_with("[organisation_types.press]", "[organisation_types.bank]"), "organisation_types"),
        (
            _with("[organisation_types.press]\n", "[organisation_types.press]\nfoo = 1\n"),
            "organisation_types.press.foo: Extra inputs",
        ),
        (
            _with('# "census.language_group" = "special_category"', '"census.shoe" = "general"'),
            "columns: 'census.shoe' is not a column in the schema",
        ),
        (
            _with('# "census.language_group" = "special_category"', '"pupils.upn" = "general"'),
            "pupils.upn is a direct identifier; a policy cannot relax that",
        ),
        (
            _with('# "census.language_group"', '"census.language_group" = "secret" #'),
            'columns."census.language_group": Input should be',
        ),
        (_with("version = 1", "version = 2"), "version: Input should be 1"),
    ],
)
def test_bad_policy_names_the_path(text, message):
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_several_errors_say_how_many_more():
    text = _with("min_cell_count = 10", "min_cell_count = -1\nextra = 1")
    with pytest.raises(PolicyFileError, match=r"\(and 1 more\)"):
        parse_policy(text)


def test_file_problems(tmp_path):
    with pytest.raises(PolicyFileError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyFileError, match="not UTF-8"):
        load_policy(binary)
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * 1_000_001)
    with pytest.raises(PolicyFileError, match="larger than"):
        load_policy(huge)
    bad = tmp_path / "policy.toml"
    bad.write_text("version = 3\n")
    with pytest.raises(PolicyFileError, match=r"^policy.toml: version"):
        load_policy(bad)
